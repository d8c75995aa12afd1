"""Two operator replicas, kopf peering: one reconciles, the other takes over when it is killed."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    database_secret,
    get_json,
    start_operator,
    stop_operator,
    tenant,
    wait_for,
)

PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


@pytest.fixture
def ha_namespace(cluster: str) -> Iterator[str]:
    # Outside the session operator's orion-test-* pattern: only the two replicas watch it.
    name = f"orion-ha-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "orion-operator"},
        },
        name,
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def ready(name: str, namespace: str) -> bool:
    status = get_json("tenant", name, "-n", namespace).get("status") or {}
    return status.get("phase") == "Ready"


def test_one_replica_reconciles_and_the_other_takes_over_after_a_kill(
    cluster: str,
    alert_receivers: AlertReceivers,
    ha_namespace: str,
    app_database: AppDatabase,
    tmp_path: Path,
):
    replicas: list[OperatorProcess] = [
        start_operator(
            cluster, alert_receivers, tmp_path / f"replica-{n}.log", ha_namespace, standalone=False
        )
        for n in (1, 2)
    ]
    try:
        standby = wait_for(
            lambda: next((r for r in replicas if PAUSED in r.log()), None),
            what="one replica to pause in favour of the other",
        )
        active = next(r for r in replicas if r is not standby)
        assert PAUSED not in active.log()

        apply(database_secret(app_database.url), ha_namespace)
        apply(tenant("first"), ha_namespace)
        wait_for(lambda: ready("first", ha_namespace), what="the first Tenant to be Ready")
        assert f"[{ha_namespace}/first]" in active.log()
        assert f"[{ha_namespace}/first]" not in standby.log()

        active.process.send_signal(signal.SIGKILL)
        active.process.wait()
        killed_at = time.monotonic()
        apply(tenant("second"), ha_namespace)
        wait_for(
            lambda: ready("second", ha_namespace),
            timeout=120,
            what="the standby to take over and reconcile the second Tenant",
        )
        takeover = time.monotonic() - killed_at
        assert RESUMED in standby.log()
        assert f"[{ha_namespace}/second]" in standby.log()
        print(f"takeover after SIGKILL of the active replica: {takeover:.1f} s")
    finally:
        for replica in replicas:
            stop_operator(replica)
