"""The operator killed with SIGKILL at random points (seeded; the seed is printed) while it backs
up to a volume and to S3, rolls out a new image through its gates, and deletes tenants; then
started again. Each scenario repeats over several kill points, then checks the invariants."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orion_operator.devenv.kubectl import kubectl
from tests.chaos.faults import KillPoints
from tests.chaos.invariants import (
    assert_artifact_complete,
    assert_invariants,
    assert_tenant_data_deleted_only_after_backup,
    tenant_row_counts,
)
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    apply,
    database_secret,
    get_json,
    tenant,
    wait_for,
)
from tests.integration.test_backup import backup, finished
from tests.integration.test_backup_faults import (
    BigDatabase,
    Bucket,
    RestartableOperator,
    s3_secret,
    s3_storage,
    volume_storage,
)
from tests.integration.test_rollout import manifest, released, template_image
from tests.integration.test_tenant_lifecycle import SCOPED, SEED, gone
from tests.rollout_api import ImageScriptedApi

KILL_POINTS = 3
IMAGES = [f"ghcr.io/example/orion-api:1.{minor}.0" for minor in range(KILL_POINTS + 1)]


def phases(backups: tuple[str, ...], namespace: str) -> str:
    found = [(get_json("backup", b, "-n", namespace).get("status") or {}) for b in backups]
    return ", ".join(
        f"{b} {s.get('phase', 'Pending')} (attempt {s.get('attempts', 0)})"
        for b, s in zip(backups, found, strict=True)
    )


def rollout_gate(namespace: str) -> str:
    rollout = (get_json("apid", "orion-api", "-n", namespace).get("status") or {}).get("rollout")
    return f"gate {rollout['gate']}, {rollout['result']}" if rollout else "no rollout yet"


def deletion_step(tenant_id: str, namespace: str) -> str:
    if gone("tenant", tenant_id, namespace):
        return "the Tenant was gone"
    deletion = (get_json("tenant", tenant_id, "-n", namespace).get("status") or {}).get("deletion")
    return f"deletion {deletion['reason']}" if deletion else "deletion not started"


def test_backups_to_a_volume_and_s3_survive_sigkill_at_random_points(
    chaos_operator: RestartableOperator,
    big_database: BigDatabase,
    bucket: Bucket,
    s3_endpoint: str,
    alert_receivers: AlertReceivers,
    chaos_random: random.Random,
    tmp_path: Path,
) -> None:
    namespace = chaos_operator.namespace
    kills = KillPoints(chaos_random)
    chaos_operator.start()
    apply(database_secret(big_database.url), namespace)
    apply(s3_secret(), namespace)

    for round_ in range(KILL_POINTS):
        names = (f"volume-{round_}", f"s3-{round_}")
        apply(backup(names[0], executor="inline", storage=volume_storage(tmp_path)), namespace)
        apply(
            backup(names[1], executor="inline", storage=s3_storage(bucket.name, s3_endpoint)),
            namespace,
        )
        # A dump of this database takes a few seconds: before, during and after it.
        kills.kill_after(
            chaos_operator,
            0.0,
            8.0,
            f"backups round {round_}",
            functools.partial(phases, names, namespace),
        )
        chaos_operator.start()
        for name in names:
            status = finished(name, namespace, timeout=180)["status"]
            assert status["phase"] == "Completed", (name, status.get("message"), kills.log)

    assert_invariants(alert_receivers, namespace)
    assert bucket.open_uploads() == [], "an interrupted upload was left open"
    # Only committed artifacts and their manifests are left: no partial file of a killed run.
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []


@pytest.fixture
def scripted_api(chaos_operator: RestartableOperator) -> Iterator[ImageScriptedApi]:
    server = ImageScriptedApi(chaos_operator.namespace)
    with server.running():
        yield server


def test_rollouts_through_their_gates_survive_sigkill_at_random_points(
    chaos_operator: RestartableOperator,
    app_database: AppDatabase,
    scripted_api: ImageScriptedApi,
    alert_receivers: AlertReceivers,
    chaos_random: random.Random,
    tmp_path: Path,
) -> None:
    namespace = chaos_operator.namespace
    kills = KillPoints(chaos_random)
    chaos_operator.start()
    apply(database_secret(app_database.url), namespace)
    gates: dict[str, Any] = {
        "preDeploy": {
            "requireBackupWithin": "24h",
            "backup": {"storage": volume_storage(tmp_path)},
            "migrations": {"command": ["npx", "prisma", "migrate", "deploy"]},
        }
    }

    # The first rollout takes the pre-deploy Backup; the next ones find it recent.
    for image in IMAGES:
        applied = apply(manifest(scripted_api, image, **gates), namespace)
        assert applied.returncode == 0, applied.stderr
        kills.kill_after(
            chaos_operator, 0.0, 6.0, f"rollout of {image}", lambda: rollout_gate(namespace)
        )
        chaos_operator.start()
        status = released(namespace, image, timeout=180)
        assert status["stableImage"] == image, kills.log
        assert template_image(namespace) == image

    assert_invariants(alert_receivers, namespace)
    final = get_json("apid", "orion-api", "-n", namespace)["status"]
    assert not final.get("failedImages"), final
    # Exactly one pre-deploy Backup (the first rollout's) and one migration Job per rollout.
    backups = get_json("backups", "-n", namespace)["items"]
    assert [b["metadata"]["name"] for b in backups] == ["orion-api-predeploy-g1"]
    migrations = sorted(j["metadata"]["name"] for j in get_json("jobs", "-n", namespace)["items"])
    assert migrations == [f"orion-api-migrate-g{g}" for g in range(1, len(IMAGES) + 1)]
    # Only good images were rolled out: no rollout alert, no rollback.
    assert not [
        e for e in get_json("events", "-n", namespace)["items"] if "Rollback" in e["reason"]
    ]


def test_tenant_deletions_survive_sigkill_at_random_points(
    chaos_operator: RestartableOperator,
    app_database: AppDatabase,
    alert_receivers: AlertReceivers,
    chaos_random: random.Random,
    tmp_path: Path,
) -> None:
    namespace = chaos_operator.namespace
    kills = KillPoints(chaos_random)
    app_database.execute(SEED)
    doomed = [f"gone{i}" for i in range(KILL_POINTS)]
    for tenant_id in doomed:
        app_database.execute(
            f"""INSERT INTO "Tenant" (id, name) VALUES ('{tenant_id}', 'Doomed');
                INSERT INTO "User" (id, email, "tenantId")
                  SELECT '{tenant_id}-u' || g, g || '@{tenant_id}', '{tenant_id}'
                  FROM generate_series(1, 50) g;
                INSERT INTO "Product" (id, "tenantId", sku, name)
                  SELECT '{tenant_id}-p' || g, '{tenant_id}', 'S-' || g, 'P' || g
                  FROM generate_series(1, 20) g;
                INSERT INTO "AuditLog" ("tenantId", action)
                  SELECT '{tenant_id}', 'a' || g FROM generate_series(1, 200) g;"""
        )
    chaos_operator.start()
    apply(database_secret(app_database.url), namespace)
    final_backup = {"storage": volume_storage(tmp_path)}
    for tenant_id in doomed:
        apply(tenant(tenant_id, deletionPolicy="Delete", finalBackup=final_backup), namespace)
    apply(tenant("acme"), namespace)  # Retain: stays, and its rows must not change
    survivors_before = tenant_row_counts(app_database, "acme", SCOPED)
    wait_for(
        lambda: all(
            (get_json("tenant", t, "-n", namespace).get("status") or {}).get("phase") == "Ready"
            for t in [*doomed, "acme"]
        ),
        timeout=120,
        what="the Tenants to be Ready",
    )

    for tenant_id in doomed:
        before = tenant_row_counts(app_database, tenant_id, SCOPED)
        assert sum(before.values()) == 270
        kubectl("delete", "tenant", tenant_id, "-n", namespace, "--wait=false")
        kills.kill_after(
            chaos_operator,
            0.0,
            5.0,
            f"deletion of tenant {tenant_id}",
            functools.partial(deletion_step, tenant_id, namespace),
        )
        # While the operator is down, nothing may be gone without its backup.
        assert_tenant_data_deleted_only_after_backup(app_database, namespace, tenant_id, before)
        chaos_operator.start()
        wait_for(lambda t=tenant_id: gone("tenant", t, namespace), 180, f"Tenant {tenant_id} to go")
        final = assert_tenant_data_deleted_only_after_backup(
            app_database, namespace, tenant_id, before
        )
        assert final is not None
        assert tenant_row_counts(app_database, tenant_id, SCOPED) == dict.fromkeys(SCOPED, 0)
        assert not app_database.query('SELECT 1 FROM "Tenant" WHERE id = %s', (tenant_id,))

    assert_invariants(alert_receivers, namespace)
    assert tenant_row_counts(app_database, "acme", SCOPED) == survivors_before
    assert len(get_json("backups", "-n", namespace)["items"]) == len(doomed)


def test_a_run_committed_before_its_result_was_recorded_is_recorded_not_run_again(
    chaos_operator: RestartableOperator,
    app_database: AppDatabase,
    alert_receivers: AlertReceivers,
    tmp_path: Path,
) -> None:
    """The narrowest kill point: the artifact is committed, the status still says Running. A new
    run would replace the artifact with the data as it is now: here, after the tenant's rows
    were deleted, an empty final backup."""
    namespace = chaos_operator.namespace
    app_database.execute(SEED)
    chaos_operator.start()
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme"), namespace)
    wait_for(
        lambda: (
            (get_json("tenant", "acme", "-n", namespace).get("status") or {}).get("phase")
            == "Ready"
        ),
        timeout=60,
        what="Tenant acme Ready",
    )
    apply(
        backup(
            "acme-last",
            type="tenant",
            tenantRef={"name": "acme"},
            executor="inline",
            storage=volume_storage(tmp_path),
        ),
        namespace,
    )
    first = finished("acme-last", namespace)["status"]
    assert first["phase"] == "Completed", first.get("message")
    assert sum(first["rowCounts"].values()) == 5

    # Killed between committing the artifact and recording it: what the API server then holds.
    chaos_operator.kill()
    lost = {k: None for k in ("completedAt", "sha256", "sizeBytes", "location", "manifest")}
    kubectl(
        "patch", "backup", "acme-last", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {**lost, "phase": "Running"}}),
    )  # fmt: skip
    for table in ("Sale", "AuditLog", "Product", "User"):  # children first
        app_database.execute(f'DELETE FROM "{table}" WHERE "tenantId" = %s', ("acme",))

    chaos_operator.start()
    again = finished("acme-last", namespace)
    status = again["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["sha256"] == first["sha256"], "the committed artifact was replaced by a new run"
    assert status["rowCounts"] == first["rowCounts"]
    assert_artifact_complete(again)
    assert_invariants(alert_receivers, namespace)
