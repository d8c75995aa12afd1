"""The first slice end to end: kubectl apply a Tenant, the operator writes its row and reports."""

from __future__ import annotations

import json
import uuid

import pytest

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    start_operator,
    stop_operator,
    tenant,
    wait_for,
)


def ready_tenant(name: str, namespace: str, status: str = "True", timeout: float = 60) -> dict:
    def check() -> dict | None:
        obj = get_json("tenant", name, "-n", namespace)
        found = condition(obj)
        return obj if found and found["status"] == status else None

    return wait_for(check, timeout, f"Tenant {name} Ready={status}")


def test_crds_are_established_and_listed_under_the_orion_category(cluster: str, namespace: str):
    crd = get_json("crd", "tenants.orion.io")
    established = next(c for c in crd["status"]["conditions"] if c["type"] == "Established")
    assert established["status"] == "True"
    assert kubectl("get", "orion", "-n", namespace).returncode == 0
    assert kubectl("get", "tn", "-n", namespace).returncode == 0


def test_applying_a_tenant_writes_its_row_and_reports_counts(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    # The app already has this tenant and some of its data: the operator adopts it.
    app_database.execute("""INSERT INTO "Tenant" (id, name, plan) VALUES ('acme', 'old', 'free')""")
    app_database.execute(
        """INSERT INTO "User" (id, email, "tenantId") VALUES
           ('u1', 'ana@acme', 'acme'), ('u2', 'luis@acme', 'acme'), ('root', 'root@x', NULL)"""
    )
    assert apply(database_secret(app_database.url), namespace).returncode == 0
    applied = apply(tenant("acme", displayName="Acme Corp", plan="pro"), namespace)
    assert applied.returncode == 0, applied.stderr

    obj = ready_tenant("acme", namespace)
    assert app_database.query('SELECT id, name, plan, status FROM "Tenant"') == [
        ("acme", "Acme Corp", "pro", "active")
    ]
    status = obj["status"]
    assert status["phase"] == "Ready"
    assert status["tenantId"] == "acme"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj)["reason"] == "Synced"
    assert condition(obj)["observedGeneration"] == obj["metadata"]["generation"]
    assert status["rowCounts"] == {"AuditLog": 0, "Product": 0, "Sale": 0, "User": 2}

    table = kubectl("get", "tenants", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "TENANT", "ID", "PLAN", "PHASE", "USERS", "AGE"]
    assert table[1].split()[:5] == ["acme", "acme", "pro", "Ready", "2"]

    # A spec change reaches the database and the status says which generation it reflects.
    kubectl(
        "patch",
        "tenant",
        "acme",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"plan": "enterprise", "suspended": True}}),
    )
    wait_for(
        lambda: (
            app_database.query('SELECT plan, status FROM "Tenant"') == [("enterprise", "suspended")]
        ),
        what="the plan change in the database",
    )
    suspended = wait_for(
        lambda: (
            (o := get_json("tenant", "acme", "-n", namespace))["status"].get("phase") == "Suspended"
            and o
        ),
        what="phase Suspended",
    )
    assert suspended["status"]["observedGeneration"] == suspended["metadata"]["generation"] == 2


def test_tenant_id_defaults_to_the_name_and_new_rows_are_created(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    apply(database_secret(app_database.url, name="app-db", key="url"), namespace)
    applied = apply(
        tenant(
            "globex-corp",
            tenantId="globex",
            database={"secretRef": {"name": "app-db", "key": "url"}},
        ),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr
    ready_tenant("globex-corp", namespace)
    assert app_database.query('SELECT id, name, plan FROM "Tenant"') == [
        ("globex", "globex", "free")
    ]

    apply(tenant("initech", database={"secretRef": {"name": "app-db", "key": "url"}}), namespace)
    assert ready_tenant("initech", namespace)["status"]["tenantId"] == "initech"


def test_missing_secret_is_reported_then_recovers_once_created(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    apply(tenant("acme"), namespace)
    obj = ready_tenant("acme", namespace, status="False")
    ready = condition(obj)
    assert ready["reason"] == "SecretNotFound"
    assert 'Secret "orion-database" not found' in ready["message"]
    assert "spec.database.secretRef" in ready["message"]
    assert obj["status"]["phase"] == "Error"

    apply(database_secret(app_database.url), namespace)
    ready_tenant("acme", namespace)
    assert app_database.query('SELECT id FROM "Tenant"') == [("acme",)]


def test_missing_secret_key_names_the_key(operator: OperatorProcess, namespace: str):
    apply(database_secret("postgresql://x@127.0.0.1/x", key="WRONG"), namespace)
    apply(tenant("acme"), namespace)
    ready = condition(ready_tenant("acme", namespace, status="False"))
    assert ready["reason"] == "SecretKeyNotFound"
    assert 'Secret "orion-database" has no key "DATABASE_URL"' in ready["message"]


def test_unreachable_database_keeps_the_password_out_of_status_events_and_logs(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    password = "Sup3r-Secret-" + namespace
    unreachable = f"postgresql://orion:{password}@127.0.0.1:1/orion"
    apply(database_secret(unreachable), namespace)
    apply(tenant("acme"), namespace)

    obj = ready_tenant("acme", namespace, status="False")
    ready = condition(obj)
    assert ready["reason"] == "DatabaseUnreachable"
    assert "cannot connect to PostgreSQL" in ready["message"]
    # Retried with backoff: the operator keeps trying and keeps running.
    wait_for(
        lambda: operator.log().count(f"[{namespace}/acme] Handler") >= 3,
        what="several retries in the operator log",
    )
    operator.assert_running()

    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "DatabaseUnreachable" in events
    for place, text in [("status", json.dumps(obj)), ("events", events), ("log", operator.log())]:
        assert password not in text, f"the database password leaked into the {place}"

    # Fix the Secret: the next retry succeeds without touching the Tenant.
    apply(database_secret(app_database.url), namespace)
    ready_tenant("acme", namespace)


def test_observe_mode_reports_a_missing_row_and_writes_nothing(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme", provisioning="observe"), namespace)
    ready = condition(ready_tenant("acme", namespace, status="False"))
    assert ready["reason"] == "TenantRowMissing"
    assert app_database.query('SELECT count(*) FROM "Tenant"') == [(0,)]

    app_database.execute("""INSERT INTO "Tenant" (id, name, plan) VALUES ('acme', 'App', 'free')""")
    ready_tenant("acme", namespace)
    assert app_database.query('SELECT name FROM "Tenant"') == [("App",)]


def test_bad_input_is_rejected_at_apply_time_naming_the_field(
    operator: OperatorProcess, namespace: str
):
    bad_id = apply(tenant("acme", tenantId="Acme_Corp"), namespace)
    assert bad_id.returncode != 0
    assert "spec.tenantId" in bad_id.stderr
    assert "should match" in bad_id.stderr

    bad_plan = apply(tenant("acme", plan="platinum"), namespace)
    assert bad_plan.returncode != 0
    assert "spec.plan" in bad_plan.stderr
    assert 'Unsupported value: "platinum"' in bad_plan.stderr

    unknown_field = kubectl(
        "apply",
        "-n",
        namespace,
        "--validate=strict",
        "-f",
        "-",
        check=False,
        input=json.dumps(tenant("acme", tennantId="acme")),
    )
    assert unknown_field.returncode != 0
    assert "tennantId" in unknown_field.stderr

    assert apply(tenant("acme", tenantId="acme"), namespace).returncode == 0
    renamed = apply(tenant("acme", tenantId="acme-2"), namespace)
    assert renamed.returncode != 0
    assert "spec.tenantId cannot be changed once set" in renamed.stderr
    operator.assert_running()


def test_resync_picks_up_new_rows_and_puts_back_a_row_edited_by_hand(
    cluster: str,
    alert_receivers: AlertReceivers,
    app_database: AppDatabase,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Its own operator, resyncing every 2 s, on namespaces the shared operator does not watch.
    namespace = f"orion-resync-{uuid.uuid4().hex[:8]}"
    running = start_operator(
        cluster,
        alert_receivers,
        tmp_path_factory.mktemp("resync") / "operator.log",
        namespace_pattern="orion-resync-*",
        extra_env={"ORION_TENANT_RESYNC_SECONDS": "2"},
    )
    kubectl("create", "namespace", namespace)
    try:
        apply(database_secret(app_database.url), namespace)
        assert apply(tenant("acme", plan="pro"), namespace).returncode == 0
        generation = ready_tenant("acme", namespace)["metadata"]["generation"]

        app_database.execute(
            """INSERT INTO "User" (id, email, "tenantId") VALUES
               ('u1', 'ana@acme', 'acme'), ('u2', 'luis@acme', 'acme')"""
        )
        app_database.execute("""UPDATE "Tenant" SET plan = 'free' WHERE id = 'acme'""")

        def counts() -> dict | None:
            obj = get_json("tenant", "acme", "-n", namespace)
            return obj if obj["status"].get("rowCounts", {}).get("User") == 2 else None

        obj = wait_for(counts, 30, "the resync to count the new users")
        assert obj["metadata"]["generation"] == generation  # no spec change was needed
        wait_for(
            lambda: (
                app_database.query("""SELECT plan FROM "Tenant" WHERE id = 'acme'""") == [("pro",)]
            ),
            30,
            "the resync to put the plan back",
        )
    finally:
        # While the operator runs, so that it releases the Tenant's finalizer.
        kubectl("delete", "namespace", namespace, "--timeout=60s", check=False)
        stop_operator(running)
