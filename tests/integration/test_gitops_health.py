"""Live objects read as GitOps tools read them: kstatus (Flux) and the Argo CD health checks.

One operator run brings every kind into its meaningful states; each object is then checked
with both readers. With ORION_RECORD_STATUSES=1 the objects are also written to
tests/fixtures/statuses/, the recordings the unit tests run the Lua checks over.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.gitops_health import CURRENT, FAILED, IN_PROGRESS, argo_health, kstatus
from tests.health_server import ScriptedHealthServer
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    database_secret,
    get_json,
    tenant,
    wait_for,
)
from tests.integration.test_apideployment import api_deployment
from tests.integration.test_backup import backup, seed
from tests.integration.test_maintenance import RUN_ANNOTATION, maintenance
from tests.integration.test_restore import restore, target, volume  # noqa: F401
from tests.integration.test_rollout import (
    BAD,
    V1,
    V2,
    api,  # noqa: F401
    cordon,
    cordoned,  # noqa: F401
    manifest,
    released,
)
from tests.rollout_api import ImageScriptedApi

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statuses"
RESOURCES = {
    "Tenant": "tenants.orion.io",
    "Backup": "backups.orion.io",
    "BackupSchedule": "backupschedules.orion.io",
    "Restore": "restores.orion.io",
    "ApiDeployment": "apideployments.orion.io",
    "DatabaseMaintenance": "databasemaintenances.orion.io",
}


def schedule(name: str, path: Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": "0 3 * * *", "template": {"storage": volume(path)}, **spec},
    }


def _ready_reason(obj: dict[str, Any]) -> str | None:
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
    return found[0].get("reason") if found else None


def settled(
    kind: str, name: str, namespace: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json(RESOURCES[kind], name, "-n", namespace)
        return obj if done(obj) else None

    return wait_for(check, timeout=120, what=f"{kind} {name} to settle")


@contextlib.contextmanager
def generations_seen(kind: str, name: str, namespace: str) -> Iterator[list[tuple[int, ...]]]:
    """(generation, status.observedGeneration, status.rollout.generation) of every version
    written while the block runs, as a watch delivers them: polling can miss a state that
    lasts a moment. A field not set reads 0."""
    seen: list[tuple[int, ...]] = []
    fields = "{.metadata.generation} {.status.observedGeneration} {.status.rollout.generation}"
    line = f"jsonpath={fields}{{'\\n'}}"
    watch = subprocess.Popen(
        ["kubectl", "get", RESOURCES[kind], name, "-n", namespace, "--watch", "-o", line],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield seen
    finally:
        watch.terminate()
        output, _ = watch.communicate(timeout=30)
    # Stopped mid-write, the last line may be cut short: only whole lines count.
    for line in output.splitlines(keepends=True):
        if line.endswith("\n"):
            seen.append(tuple(int(value or 0) for value in line.split(" ")))


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def ready_reason_is(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: _ready_reason(obj) == reason


def recorded(obj: dict[str, Any], namespace: str, backups: Path) -> dict[str, Any]:
    """The object as a fixture: no server bookkeeping, the test's namespace and paths neutral."""
    metadata = obj["metadata"]
    kept = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            "name": metadata["name"],
            "namespace": "orion",
            "generation": metadata["generation"],
        },
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }
    text = yaml.safe_dump(kept, sort_keys=False)
    # The namespace, temporary directory and local ports differ on every run.
    text = text.replace(namespace, "orion").replace(str(backups), "/backups")
    text = re.sub(r"127\.0\.0\.1:\d+", "orion-api:3000", text)
    return yaml.safe_load(text)


@pytest.fixture
def health_servers() -> Iterator[tuple[ScriptedHealthServer, ScriptedHealthServer]]:
    good, bad = ScriptedHealthServer(), ScriptedHealthServer()
    bad.mode = "degraded"
    with good.running(), bad.running():
        yield good, bad


def test_every_kind_reads_the_same_in_kstatus_and_argo_cd_in_each_state(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    target: str,  # noqa: F811
    tmp_path: Path,
    health_servers: tuple[ScriptedHealthServer, ScriptedHealthServer],
):
    seed(app_database)
    good, bad = health_servers
    target_url = app_database.url.rsplit("/", 1)[0] + f"/{target}"
    missing_db = {"secretRef": {"name": "no-such-secret", "key": "DATABASE_URL"}}
    gone_table = {"table": "NoSuchTable", "timestampColumn": "createdAt", "olderThan": "30d"}
    for each in (
        database_secret(app_database.url),
        database_secret(target_url, name="restore-target"),
        tenant("acme", displayName="Acme", plan="pro"),
        tenant("initech", suspended=True),
        tenant("umbrella", database=missing_db),
        backup("nightly", storage=volume(tmp_path)),
        backup("broken", storage=volume(tmp_path), database=missing_db),
        restore(
            "into-target",
            backupRef={"name": "nightly"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
        ),
        restore("from-broken", backupRef={"name": "broken"}),
        restore("waiting", backupRef={"name": "not-taken-yet"}),
        schedule("hourly", tmp_path),
        schedule("paused", tmp_path, suspend=True),
        schedule("on-mars", tmp_path, timeZone="Mars/Olympus_Mons"),
        maintenance("idle", tasks={"analyze": {}}),
        maintenance("paused", suspend=True, tasks={"analyze": {}}),
        maintenance("later", tasks={"analyze": {}}),
        maintenance("failing", tasks={"retention": [gone_table]}),
        maintenance("on-mars", timeZone="Mars/Olympus_Mons", tasks={"analyze": {}}),
        api_deployment(good.url, name="healthy-api"),
        api_deployment(bad.url, name="degraded-api"),
    ):
        applied = apply(each, namespace)
        assert applied.returncode == 0, applied.stderr
    for name in ("idle", "failing"):
        settled("DatabaseMaintenance", name, namespace, phase_is("Scheduled"))
        kubectl("annotate", "dbm", name, "-n", namespace, f"{RUN_ANNOTATION}=now")

    # name of the fixture: (kind, object, until, kstatus, Argo CD health)
    cases = {
        "tenant-ready": ("Tenant", "acme", ready_reason_is("Synced"), CURRENT, "Healthy"),
        "tenant-suspended": (
            "Tenant",
            "initech",
            ready_reason_is("Suspended"),
            CURRENT,
            "Suspended",
        ),
        "tenant-secret-missing": (
            "Tenant",
            "umbrella",
            ready_reason_is("SecretNotFound"),
            IN_PROGRESS,
            "Degraded",
        ),
        "backup-completed": ("Backup", "nightly", phase_is("Completed"), CURRENT, "Healthy"),
        "backup-failed": ("Backup", "broken", phase_is("Failed"), FAILED, "Degraded"),
        "restore-completed": (
            "Restore",
            "into-target",
            phase_is("Completed"),
            CURRENT,
            "Healthy",
        ),
        "restore-failed": ("Restore", "from-broken", phase_is("Failed"), FAILED, "Degraded"),
        "restore-pending": ("Restore", "waiting", phase_is("Pending"), IN_PROGRESS, "Progressing"),
        "backupschedule-active": (
            "BackupSchedule",
            "hourly",
            phase_is("Active"),
            CURRENT,
            "Healthy",
        ),
        "backupschedule-suspended": (
            "BackupSchedule",
            "paused",
            phase_is("Suspended"),
            CURRENT,
            "Suspended",
        ),
        "backupschedule-invalid": (
            "BackupSchedule",
            "on-mars",
            phase_is("Error"),
            FAILED,
            "Degraded",
        ),
        "databasemaintenance-succeeded": (
            "DatabaseMaintenance",
            "idle",
            phase_is("Succeeded"),
            CURRENT,
            "Healthy",
        ),
        "databasemaintenance-scheduled": (
            "DatabaseMaintenance",
            "later",
            phase_is("Scheduled"),
            CURRENT,
            "Healthy",
        ),
        "databasemaintenance-run-failed": (
            "DatabaseMaintenance",
            "failing",
            phase_is("Failed"),
            IN_PROGRESS,
            "Degraded",
        ),
        "databasemaintenance-suspended": (
            "DatabaseMaintenance",
            "paused",
            phase_is("Suspended"),
            CURRENT,
            "Suspended",
        ),
        "databasemaintenance-invalid": (
            "DatabaseMaintenance",
            "on-mars",
            phase_is("Error"),
            FAILED,
            "Degraded",
        ),
        "apideployment-healthy": (
            "ApiDeployment",
            "healthy-api",
            phase_is("Healthy"),
            CURRENT,
            "Healthy",
        ),
        "apideployment-degraded": (
            "ApiDeployment",
            "degraded-api",
            phase_is("Degraded"),
            IN_PROGRESS,
            "Degraded",
        ),
    }
    seen = {
        fixture: checked(fixture, settled(kind, name, namespace, until), *expected)
        for fixture, (kind, name, until, *expected) in cases.items()
    }

    # Ready True with nothing in progress, for every kind that got there.
    for fixture in ("tenant-ready", "backup-completed"):
        ready = [c for c in seen[fixture]["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", fixture
        assert {c["type"] for c in seen[fixture]["status"]["conditions"]}.isdisjoint(
            {"Reconciling", "Stalled"}
        ), fixture

    record(seen, namespace, tmp_path)


def test_rollouts_and_runs_under_way_are_in_progress_and_failed_ones_stalled(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,  # noqa: F811
    cordoned: list[str],  # noqa: F811
    tmp_path: Path,
):
    apply(database_secret(app_database.url), namespace)
    assert apply(manifest(api, V1), namespace).returncode == 0
    released(namespace, V1)

    # Cordoned nodes keep new pods Pending: the rollout and the backup Job stay under way.
    cordon(cordoned)
    with generations_seen("ApiDeployment", "orion-api", namespace) as versions:
        assert apply(manifest(api, V2), namespace).returncode == 0
        job_backup = backup(
            "running",
            executor="job",
            storage={"volume": {"path": str(tmp_path), "claimName": "orion-backups"}},
        )
        assert apply(job_backup, namespace).returncode == 0
        seen = {
            "apideployment-rolling-out": checked(
                "apideployment-rolling-out",
                settled("ApiDeployment", "orion-api", namespace, phase_is("Progressing")),
                IN_PROGRESS,
                "Progressing",
            ),
            "backup-running": checked(
                "backup-running",
                settled("Backup", "running", namespace, phase_is("Running")),
                IN_PROGRESS,
                "Progressing",
            ),
        }
    # No version reports the new generation's rollout beside the old observedGeneration: a
    # reader would take the new rollout's phase for the old spec's.
    assert any(generation == 2 for generation, _, _ in versions), versions
    for _, observed, rollout_started_for in versions:
        assert observed >= rollout_started_for, versions
    for node in cordoned:
        kubectl("uncordon", node)
    released(namespace, V2)

    # A bad image is rolled back; the spec still names it, so nothing changes until it does.
    api.health[BAD] = "500"
    assert apply(manifest(api, BAD), namespace).returncode == 0
    seen["apideployment-rolled-back"] = checked(
        "apideployment-rolled-back",
        settled("ApiDeployment", "orion-api", namespace, phase_is("RolledBack")),
        FAILED,
        "Degraded",
    )
    record(seen, namespace, tmp_path)


def checked(
    fixture: str, obj: dict[str, Any], expected_kstatus: str, expected_health: str
) -> dict[str, Any]:
    """The object, once both readers were checked against what is expected of it."""
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"], fixture
    assert (kstatus(obj), argo_health(obj)[0]) == (expected_kstatus, expected_health), (
        fixture,
        status.get("conditions"),
    )
    return obj


def record(seen: dict[str, dict[str, Any]], namespace: str, backups: Path) -> None:
    if not os.environ.get("ORION_RECORD_STATUSES"):
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for fixture, obj in seen.items():
        (FIXTURES / f"{fixture}.yaml").write_text(
            yaml.safe_dump(recorded(obj, namespace, backups), sort_keys=False, allow_unicode=True)
        )
