"""Tenant lifecycle end to end: deletionPolicy behind the finalizer, integrity checks and alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    tenant,
    wait_for,
)

WEBHOOK = "/orion-alerts"
SEED = """
    INSERT INTO "Tenant" (id, name, plan) VALUES ('acme', 'Acme', 'pro'), ('globex', 'G', 'free');
    INSERT INTO "User" (id, email, role, "tenantId") VALUES
      ('admin', 'root@x', 'platform_admin', NULL),
      ('u1', 'a@acme', 'owner', 'acme'), ('u2', 'b@acme', 'member', 'acme'),
      ('u3', 'c@globex', 'owner', 'globex');
    INSERT INTO "Product" (id, "tenantId", sku, name) VALUES
      ('p1', 'acme', 'A-1', 'Anvil'), ('p2', 'globex', 'G-1', 'Gadget');
    INSERT INTO "Sale" (id, "tenantId", "productId") VALUES
      ('s1', 'acme', 'p1'), ('s2', 'globex', 'p2');
    INSERT INTO "AuditLog" ("tenantId", action) VALUES ('acme', 'created'), ('globex', 'created');
"""
SCOPED = ("User", "Product", "Sale", "AuditLog")


def ready_tenant(name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json("tenant", name, "-n", namespace)
        found = condition(obj)
        return obj if found and found["status"] == "True" else None

    return wait_for(check, timeout, f"Tenant {name} Ready")


def gone(kind: str, name: str, namespace: str) -> bool:
    return kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0


def rows_of(db: AppDatabase, tenant_id: str) -> dict[str, int]:
    return {
        table: int(
            db.query(f'SELECT count(*) FROM "{table}" WHERE "tenantId" = %s', (tenant_id,))[0][0]
        )  # type: ignore[call-overload]
        for table in SCOPED
    }


def checksum_of_others(db: AppDatabase, tenant_id: str) -> list[tuple[object, ...]]:
    """Every row that is not this tenant's, as text: must not change when it is deleted."""
    parts = [
        f"""SELECT '{table}', t::text FROM "{table}" t WHERE t."tenantId" IS DISTINCT FROM %s"""
        for table in SCOPED
    ]
    parts.append("""SELECT 'Tenant', t::text FROM "Tenant" t WHERE t.id <> %s""")
    return db.query(" UNION ALL ".join(parts) + " ORDER BY 1, 2", (tenant_id,) * len(parts))


def alerts_for(receivers: AlertReceivers, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [
        body
        for body in (r.json() for r in receivers.http.to(WEBHOOK))
        if body["object"]["namespace"] == namespace and body["reason"] == reason
    ]


def events(namespace: str) -> list[dict[str, Any]]:
    return get_json("events", "-n", namespace)["items"]


def test_retain_deletes_the_object_at_once_and_leaves_the_data(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    app_database.execute(SEED)
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme", plan="pro"), namespace)
    obj = ready_tenant("acme", namespace)
    assert obj["spec"]["deletionPolicy"] == "Retain"

    kubectl("delete", "tenant", "acme", "-n", namespace, "--timeout=30s")
    assert gone("tenant", "acme", namespace)
    assert rows_of(app_database, "acme") == {"User": 2, "Product": 1, "Sale": 1, "AuditLog": 1}
    assert app_database.query("""SELECT status FROM "Tenant" WHERE id = 'acme'""") == [("active",)]


def test_suspend_marks_the_tenant_suspended_then_lets_the_object_go(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    app_database.execute(SEED)
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme", plan="pro", deletionPolicy="Suspend"), namespace)
    obj = ready_tenant("acme", namespace)
    assert "orion.io/finalizer" in obj["metadata"]["finalizers"]

    kubectl("delete", "tenant", "acme", "-n", namespace, "--timeout=60s")
    assert gone("tenant", "acme", namespace)
    assert app_database.query("""SELECT id, status FROM "Tenant" ORDER BY id""") == [
        ("acme", "suspended"),
        ("globex", "active"),
    ]
    assert rows_of(app_database, "acme")["User"] == 2
    assert any(e["reason"] == "TenantSuspended" for e in events(namespace))


def test_delete_takes_a_completed_backup_first_then_removes_only_that_tenants_rows(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    app_database.execute(SEED)
    others = checksum_of_others(app_database, "acme")
    apply(database_secret(app_database.url), namespace)
    storage = {"volume": {"path": str(tmp_path), "minFreePercent": 1}}
    apply(tenant("acme", deletionPolicy="Delete", finalBackup={"storage": storage}), namespace)
    uid = ready_tenant("acme", namespace)["metadata"]["uid"]

    kubectl("delete", "tenant", "acme", "-n", namespace, "--wait=false")
    wait_for(lambda: gone("tenant", "acme", namespace), 120, "the Tenant to go")

    final = get_json("backup", f"acme-final-{uid.replace('-', '')[:8]}", "-n", namespace)
    assert final["spec"]["type"] == "tenant" and final["spec"]["deletionPolicy"] == "Retain"
    assert not final["metadata"].get("ownerReferences"), "the final Backup must outlive the Tenant"
    status = final["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["rowCounts"] == {"User": 2, "Product": 1, "Sale": 1, "AuditLog": 1}
    artifact = Path(status["location"].removeprefix("file://"))
    assert artifact.is_relative_to(tmp_path) and artifact.stat().st_size == status["sizeBytes"]
    # The backup completed before anything was deleted.
    deleted = next(e for e in events(namespace) if e["reason"] == "TenantDataDeleted")
    assert final["metadata"]["name"] in deleted["message"]

    assert rows_of(app_database, "acme") == {"User": 0, "Product": 0, "Sale": 0, "AuditLog": 0}
    assert app_database.query("""SELECT id FROM "Tenant" ORDER BY id""") == [("globex",)]
    assert checksum_of_others(app_database, "acme") == others


def test_a_failed_final_backup_blocks_the_deletion_until_the_policy_is_retain(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
):
    app_database.execute(SEED)
    apply(database_secret(app_database.url), namespace)
    # /proc does not take new directories: the final backup cannot be written.
    storage = {"volume": {"path": "/proc/orion-final-backups", "minFreePercent": 1}}
    apply(tenant("acme", deletionPolicy="Delete", finalBackup={"storage": storage}), namespace)
    ready_tenant("acme", namespace)
    before = checksum_of_others(app_database, "nobody")

    kubectl("delete", "tenant", "acme", "-n", namespace, "--wait=false")

    def blocked() -> dict[str, Any] | None:
        obj = get_json("tenant", "acme", "-n", namespace)
        deletion = obj.get("status", {}).get("deletion") or {}
        return obj if deletion.get("reason") == "FinalBackupFailed" else None

    obj = wait_for(blocked, 90, "the deletion to be blocked by the failed backup")
    deletion = obj["status"]["deletion"]
    assert obj["status"]["phase"] == "Deleting"
    assert 'nothing of tenant "acme" was deleted' in deletion["message"]
    assert "deletionPolicy: Retain" in deletion["message"]
    assert get_json("backup", deletion["backup"], "-n", namespace)["status"]["phase"] == "Failed"
    assert any(e["reason"] == "FinalBackupFailed" for e in events(namespace))
    alert = wait_for(
        lambda: alerts_for(alert_receivers, namespace, "FinalBackupFailed"),
        what="the FinalBackupFailed alert",
    )[0]
    assert alert["severity"] == "critical" and alert["object"]["kind"] == "Tenant"
    assert checksum_of_others(app_database, "nobody") == before

    # Still blocked a while later, still nothing deleted, and alerted only once.
    wait_for(lambda: operator.log().count("FinalBackupFailed") >= 2, 30, "a further retry")
    assert not gone("tenant", "acme", namespace)
    assert checksum_of_others(app_database, "nobody") == before
    assert len(alerts_for(alert_receivers, namespace, "FinalBackupFailed")) == 1

    kubectl(
        "patch", "tenant", "acme", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"deletionPolicy": "Retain"}}),
    )  # fmt: skip
    wait_for(lambda: gone("tenant", "acme", namespace), 60, "the Tenant to go with Retain")
    assert checksum_of_others(app_database, "nobody") == before


def test_integrity_violation_raises_one_warning_and_one_recovery_for_all_tenants_on_demand(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
):
    app_database.execute(SEED)
    apply(database_secret(app_database.url), namespace)
    names = ("acme", "globex")  # two Tenants on one database: one check's worth of alerts
    apply(tenant("acme", plan="pro"), namespace)
    apply(tenant("globex"), namespace)
    obj = ready_tenant("acme", namespace)
    ready_tenant("globex", namespace)
    # The platform admin in "User" is allowed by the default allow-list.
    integrity = obj["status"]["integrity"]
    assert integrity["clean"] is True and integrity["allowedNullTenantRows"] == {"User": 1}

    def checked_once(name: str, trigger: str) -> dict[str, Any]:
        kubectl(
            "annotate", "tenant", name, "-n", namespace, "--overwrite",
            f"integrity.orion.io/check={trigger}",
        )  # fmt: skip
        return wait_for(
            lambda: (
                (o := get_json("tenant", name, "-n", namespace))["status"]
                .get("integrity", {})
                .get("trigger")
                == trigger
                and o
            ),
            what=f"the integrity check {trigger} of {name}",
        )["status"]

    def checked(trigger: str) -> list[dict[str, Any]]:
        return [checked_once(name, trigger) for name in names]

    def warned(reason: str) -> set[str]:
        return {e["involvedObject"]["name"] for e in events(namespace) if e["reason"] == reason}

    app_database.execute(
        """INSERT INTO "Product" (id, "tenantId", sku, name) VALUES ('stray', NULL, 'X', 'x')"""
    )
    for violated in checked("first"):
        assert violated["integrity"]["clean"] is False
        assert violated["integrity"]["nullTenantRows"] == {"Product": 1}
        assert violated["integrity"]["violations"] == 1
        assert violated["alerts"]["integrity"]["firing"] is True
    warning = wait_for(
        lambda: alerts_for(alert_receivers, namespace, "IntegrityViolation"),
        what="the integrity alert",
    )[0]
    assert warning["severity"] == "warning" and warning["check"] == "integrity"
    assert 'Product: 1 row(s) with a NULL "tenantId"' in warning["message"]
    wait_for(lambda: warned("IntegrityViolation") == set(names), what="each Tenant's Event")

    # The violation persists: checked again, no second alert.
    checked("second")
    app_database.execute("""DELETE FROM "Product" WHERE id = 'stray'""")
    for cleared in checked("third"):
        assert cleared["integrity"]["clean"] is True
    recovery = wait_for(
        lambda: alerts_for(alert_receivers, namespace, "IntegrityRestored"),
        what="the recovery alert",
    )
    wait_for(lambda: warned("IntegrityRestored") == set(names), what="each Tenant's recovery")
    assert len(recovery) == 1 and recovery[0]["severity"] == "info"
    assert len(alerts_for(alert_receivers, namespace, "IntegrityViolation")) == 1


def test_bad_lifecycle_input_is_rejected_at_apply_time_naming_the_field(
    operator: OperatorProcess, namespace: str
):
    unknown = apply(tenant("acme", deletionPolicy="Purge"), namespace)
    assert unknown.returncode != 0
    assert "spec.deletionPolicy" in unknown.stderr
    assert 'Unsupported value: "Purge"' in unknown.stderr

    observing = apply(tenant("acme", provisioning="observe", deletionPolicy="Delete"), namespace)
    assert observing.returncode != 0
    assert "spec.deletionPolicy" in observing.stderr
    assert "provisioning observe never writes" in observing.stderr

    assert (
        apply(tenant("acme", tenantId="acme", deletionPolicy="Retain"), namespace).returncode == 0
    )
    renamed = apply(tenant("acme", tenantId="acme-2"), namespace)
    assert renamed.returncode != 0
    assert "spec.tenantId cannot be changed once set" in renamed.stderr


def tenants_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orion_operator", "tenants", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        check=False,
    )


def test_unmanaged_tenants_are_listed_and_adopted_in_one_apply(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    app_database.execute(SEED)
    app_database.execute(
        """INSERT INTO "Tenant" (id, name, plan, status) VALUES
             ('initech', 'Initech', 'legacy-gold', 'suspended'),
             ('Bad_Id', 'Bad', 'free', 'active')"""
    )
    before = app_database.query('SELECT * FROM "Tenant" ORDER BY id')
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme", displayName="Acme", plan="pro"), namespace)
    ready_tenant("acme", namespace)

    listed = tenants_command("--unmanaged", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["TENANT", "ID", "NAME", "PLAN", "STATUS", "TENANT", "OBJECT"]
    assert [line.split()[0] for line in lines[1:]] == ["Bad_Id", "globex", "initech"]

    printed = tenants_command(
        "--unmanaged", "--manifests", "-n", namespace, "--database-url", app_database.url
    )
    # One tenant id cannot be a Tenant name: said on stderr, the others are printed.
    assert printed.returncode == 1
    assert 'tenant id "Bad_Id" is not a DNS label' in printed.stderr
    manifests = list(yaml.safe_load_all(printed.stdout))
    assert [m["metadata"]["name"] for m in manifests] == ["globex", "initech"]
    initech = manifests[1]["spec"]
    assert initech["provisioning"] == "observe" and initech["suspended"] is True
    assert "plan" not in initech  # not one of the API's plans: observe leaves it to the app

    adopted = kubectl("apply", "-n", namespace, "-f", "-", input=printed.stdout, check=False)
    assert adopted.returncode == 0, adopted.stderr
    assert ready_tenant("globex", namespace)["status"]["provisioning"] == "observe"
    assert ready_tenant("initech", namespace)["status"]["phase"] == "Suspended"
    assert app_database.query('SELECT * FROM "Tenant" ORDER BY id') == before

    again = tenants_command("--unmanaged", "-n", namespace)
    assert [line.split()[0] for line in again.stdout.splitlines()[1:]] == ["Bad_Id"]
