"""The operator's dependencies go away mid-run and come back: the whole control plane (etcd and
kube-apiserver with it), then PostgreSQL and Redis. Work under way ends Completed or Failed with
a reason, health alerts go out once per transition, and the invariants hold."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orion_operator.devenv.kubectl import kubectl
from orion_operator.devenv.redis import LocalRedis
from tests.chaos.faults import ControlPlane, DemoApi, StoppablePostgres
from tests.chaos.invariants import (
    assert_artifact_complete,
    assert_invariants,
    assert_tenant_data_deleted_only_after_backup,
    firing_checks,
    tenant_row_counts,
    transitions,
)
from tests.conftest import FIXTURES, AppDatabase
from tests.health_server import ScriptedHealthServer
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
    RestartableOperator,
    partial_file,
    volume_storage,
)
from tests.integration.test_health import api_deployment, health_state
from tests.integration.test_tenant_lifecycle import SCOPED, SEED, gone


@pytest.fixture
def orion_database(big_database: BigDatabase) -> AppDatabase:
    """The big database with the Orion schema and two tenants' rows: dumps take seconds, and
    tenants, backups and the API all live on one server the test may stop."""
    server = big_database.server
    server.psql_file(FIXTURES / "orion_schema.sql", "big", "orion")
    database = AppDatabase("big", big_database.url, big_database.password, server)
    database.execute(SEED)
    return database


@pytest.fixture
def health_server() -> Iterator[ScriptedHealthServer]:
    server = ScriptedHealthServer()
    with server.running():
        yield server


def ready(kind: str, name: str, namespace: str) -> bool:
    obj = get_json(kind, name, "-n", namespace)
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions", [])
    )


def test_control_plane_restarted_mid_run_loses_no_work_and_repeats_no_alert(
    chaos_operator: RestartableOperator,
    orion_database: AppDatabase,
    health_server: ScriptedHealthServer,
    alert_receivers: AlertReceivers,
    chaos_random: random.Random,
    tmp_path: Path,
) -> None:
    namespace = chaos_operator.namespace
    control_plane = ControlPlane()
    redis_down = ("orion-api", "redis", "RedisDown", "firing")
    chaos_operator.start()
    apply(database_secret(orion_database.url), namespace)
    api = api_deployment("orion-api", health_server.url)
    api["spec"]["healthCheck"]["failureThreshold"] = 1  # so each bad probe could alert again
    apply(api, namespace)
    storage = {"storage": volume_storage(tmp_path)}
    apply(tenant("acme", deletionPolicy="Delete", finalBackup=storage), namespace)
    wait_for(lambda: health_state("orion-api", namespace) == "ok", 60, "health ok")
    wait_for(lambda: ready("tenant", "acme", namespace), 60, "Tenant acme Ready")
    acme_before = tenant_row_counts(orion_database, "acme", SCOPED)

    # A dump under way, a tenant deletion asked for, then the control plane goes.
    apply(backup("nightly", executor="inline", storage=volume_storage(tmp_path)), namespace)
    wait_for(lambda: partial_file(tmp_path), 60, "pg_dump's output to arrive")
    kubectl("delete", "tenant", "acme", "-n", namespace, "--wait=false")
    time.sleep(chaos_random.uniform(0.0, 2.0))
    with control_plane.stopped():
        # Redis fails behind the API meanwhile. The alert needs no API server: it goes out now,
        # and once, although the status that records it cannot be written.
        down_since = time.monotonic()
        health_server.mode = "degraded"
        wait_for(
            lambda: redis_down in transitions(alert_receivers, namespace),
            30,
            "the RedisDown alert while the control plane is down",
        )
        downtime = chaos_random.uniform(6.0, 15.0)
        time.sleep(max(0.0, downtime - (time.monotonic() - down_since)))
        print(f"chaos: control plane down for {time.monotonic() - down_since:.1f}s")

    status = finished("nightly", namespace, timeout=180)["status"]
    assert status["phase"] == "Completed", status.get("message")
    wait_for(lambda: gone("tenant", "acme", namespace), 180, "Tenant acme to go")
    assert_tenant_data_deleted_only_after_backup(orion_database, namespace, "acme", acme_before)
    assert tenant_row_counts(orion_database, "acme", SCOPED) == dict.fromkeys(SCOPED, 0)

    health_server.mode = "ok"
    wait_for(lambda: health_state("orion-api", namespace) == "ok", 60, "health ok again")
    wait_for(
        lambda: (
            transitions(alert_receivers, namespace)[-1:]
            == [("orion-api", "redis", "Recovered", "resolved")]
        ),
        60,
        "the Redis recovery alert",
    )
    assert_invariants(alert_receivers, namespace)
    # One alert for the outage and one for the recovery, whatever the control plane did.
    assert transitions(alert_receivers, namespace) == [
        redis_down,
        ("orion-api", "redis", "Recovered", "resolved"),
    ]
    chaos_operator.current.assert_running()  # type: ignore[union-attr]


@pytest.fixture
def demo_api(orion_database: AppDatabase, disposable_redis: LocalRedis) -> Iterator[DemoApi]:
    api = DemoApi(orion_database.url, disposable_redis.url).start()
    yield api
    api.stop()


def test_postgres_and_redis_stopped_mid_run_fail_the_dump_once_and_alert_once_each_way(
    chaos_operator: RestartableOperator,
    orion_database: AppDatabase,
    disposable_redis: LocalRedis,
    demo_api: DemoApi,
    alert_receivers: AlertReceivers,
    chaos_random: random.Random,
    tmp_path: Path,
) -> None:
    namespace = chaos_operator.namespace
    postgres = StoppablePostgres(orion_database.server)
    chaos_operator.start()
    apply(database_secret(orion_database.url), namespace)
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "orion-redis"},
            "stringData": {"REDIS_URL": disposable_redis.url},
        },
        namespace,
    )
    api: dict[str, Any] = api_deployment("orion-api", demo_api.url)
    api["spec"]["dependencies"] = {
        "redis": {"name": "orion-redis", "key": "REDIS_URL"},
        "queues": [],
    }
    apply(api, namespace)
    apply(tenant("acme"), namespace)
    wait_for(lambda: health_state("orion-api", namespace) == "ok", 60, "health ok")
    wait_for(lambda: ready("tenant", "acme", namespace), 60, "Tenant acme Ready")

    apply(backup("interrupted", executor="inline", storage=volume_storage(tmp_path)), namespace)
    wait_for(lambda: partial_file(tmp_path), 60, "pg_dump's output to arrive")
    postgres.stop()
    time.sleep(chaos_random.uniform(0.0, 3.0))
    disposable_redis.stop()
    print("chaos: Redis stopped")
    wait_for(
        lambda: (
            ("orion-api", "database", "DatabaseDown", "firing")
            in transitions(alert_receivers, namespace)
        ),
        60,
        "the DatabaseDown alert",
    )
    time.sleep(chaos_random.uniform(0.0, 5.0))
    disposable_redis.start()
    print("chaos: Redis started")
    time.sleep(chaos_random.uniform(0.0, 3.0))
    postgres.start()

    interrupted = finished("interrupted", namespace, timeout=120)
    assert interrupted["status"]["phase"] == "Failed"
    wait_for(lambda: health_state("orion-api", namespace) == "ok", 60, "health ok again")

    def recovered() -> bool:
        fired, still_open = firing_checks(alert_receivers, namespace)
        return "database" in fired and not still_open

    wait_for(recovered, 60, "a recovery alert for every check that fired")

    # After the outage the same Backup spec completes, and the tenant is still there.
    apply(backup("after", executor="inline", storage=volume_storage(tmp_path)), namespace)
    after = finished("after", namespace, timeout=120)
    assert after["status"]["phase"] == "Completed", after["status"].get("message")
    assert_artifact_complete(after)
    wait_for(lambda: ready("tenant", "acme", namespace), 120, "Tenant acme Ready again")
    assert_invariants(alert_receivers, namespace)
    assert tenant_row_counts(orion_database, "acme", SCOPED) == {
        "User": 2,
        "Product": 1,
        "Sale": 1,
        "AuditLog": 1,
    }
