"""BackupSchedules on the real control plane: runs on the minute, Forbid, retention, Tenants."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    tenant,
    wait_for,
)
from tests.integration.test_backup import backup, finished, seed

SCHEDULE_LABEL = "orion.io/backup-schedule"


def schedule(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": name},
        "spec": spec,
    }


def owned_backups(namespace: str, schedule_name: str) -> list[dict[str, Any]]:
    return get_json("backups", "-n", namespace, "-l", f"{SCHEDULE_LABEL}={schedule_name}")["items"]


def phase(backup_name: str, namespace: str) -> str | None:
    return get_json("backup", backup_name, "-n", namespace).get("status", {}).get("phase")


def events(namespace: str, reason: str) -> list[dict[str, Any]]:
    items = get_json("events", "-n", namespace)["items"]
    return [event for event in items if event.get("reason") == reason]


def owner_reference(schedule_name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "BackupSchedule",
        "name": schedule_name,
        "uid": uid,
        "controller": True,
    }


def test_a_schedule_runs_on_time_skips_while_a_run_is_going_and_cleans_up_after_itself(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    volume = {"volume": {"path": str(tmp_path), "minFreePercent": 1}}
    applied = apply(
        schedule("every", schedule="* * * * *", template={"storage": volume}), namespace
    )
    assert applied.returncode == 0, applied.stderr
    uid = get_json("backupschedule", "every", "-n", namespace)["metadata"]["uid"]

    # A second schedule whose earlier run cannot finish: its Job's pod waits for a claim that
    # does not exist. Suspended until that run is in place, so its next fire time meets it.
    stuck_template = {
        "executor": "job",
        "storage": {"volume": {"path": "/backups", "claimName": "no-such-claim"}},
    }
    apply(schedule("stuck", schedule="* * * * *", suspend=True, template=stuck_template), namespace)
    stuck_uid = get_json("backupschedule", "stuck", "-n", namespace)["metadata"]["uid"]
    going = backup("stuck-202601010000", **stuck_template)
    going["metadata"]["labels"] = {SCHEDULE_LABEL: "stuck"}
    going["metadata"]["ownerReferences"] = [owner_reference("stuck", stuck_uid)]
    assert apply(going, namespace).returncode == 0
    wait_for(
        lambda: phase("stuck-202601010000", namespace) == "Running",
        what="the stuck run to be Running",
    )
    resume = {"spec": {"suspend": False}}
    kubectl("patch", "bks", "stuck", "-n", namespace, "--type=merge", "-p", json.dumps(resume))

    first = wait_for(
        lambda: owned_backups(namespace, "every"), timeout=90, what="the first scheduled Backup"
    )[0]
    name = first["metadata"]["name"]
    stamp = name.removeprefix("every-")
    fire = datetime.datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=datetime.UTC)
    assert first["metadata"]["ownerReferences"][0]["uid"] == uid
    assert first["metadata"]["ownerReferences"][0]["controller"] is True
    done = finished(name, namespace)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    # Made by a schedule: deletionPolicy defaults to Delete, so the finalizer is there.
    assert "orion.io/finalizer" in done["metadata"]["finalizers"]

    status = wait_for(
        lambda: (
            (s := get_json("backupschedule", "every", "-n", namespace)["status"]).get(
                "lastSuccessfulTime"
            )
            and s
        ),
        what="the schedule to report the successful run",
    )
    assert status["lastScheduleTime"] == fire.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["lastBackup"] == name and status["phase"] == "Active"
    next_time = datetime.datetime.fromisoformat(status["nextScheduleTime"].replace("Z", "+00:00"))
    assert next_time > fire and next_time.second == 0

    # Forbid: the stuck schedule's fire time is skipped with an Event naming the run still going,
    # and no second Backup is made.
    skipped = wait_for(
        lambda: events(namespace, "BackupSkipped"), timeout=90, what="a BackupSkipped Event"
    )
    assert skipped[0]["involvedObject"]["name"] == "stuck"
    assert "stuck-202601010000 is still running" in skipped[0]["message"]
    assert [b["metadata"]["name"] for b in owned_backups(namespace, "stuck")] == [
        "stuck-202601010000"
    ]
    stuck_status = get_json("backupschedule", "stuck", "-n", namespace)["status"]
    assert stuck_status["active"] == ["stuck-202601010000"]
    assert stuck_status["lastScheduleTime"]  # handled, so a restart does not fire it again

    # Deleting the schedule deletes its Backups, and their artifacts with them.
    artifact = Path(done["status"]["location"].removeprefix("file://"))
    assert artifact.exists()
    kubectl("delete", "backupschedule", "every", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(lambda: not owned_backups(namespace, "every"), what="the Backups to go")
    wait_for(lambda: not artifact.exists(), what="the artifact to be deleted")


def test_retention_deletes_old_backups_and_their_artifacts(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    apply(database_secret(app_database.url), namespace)
    volume = {"volume": {"path": str(tmp_path), "minFreePercent": 1}}
    # Suspended, so the only Backups are the ones below, as if made on three earlier days.
    apply(
        schedule(
            "nightly",
            schedule="0 2 * * *",
            suspend=True,
            template={"storage": volume},
            retention={"keepLast": 1},
        ),
        namespace,
    )
    owner = get_json("backupschedule", "nightly", "-n", namespace)["metadata"]
    locations = []
    for day in ("202611250200", "202611260200", "202611270200"):
        made = backup(f"nightly-{day}", storage=volume)
        made["metadata"]["labels"] = {SCHEDULE_LABEL: "nightly"}
        made["metadata"]["ownerReferences"] = [owner_reference("nightly", owner["uid"])]
        apply(made, namespace)
        locations.append(
            Path(
                finished(f"nightly-{day}", namespace)["status"]["location"].removeprefix("file://")
            )
        )

    wait_for(
        lambda: (
            [b["metadata"]["name"] for b in owned_backups(namespace, "nightly")]
            == ["nightly-202611270200"]
        ),
        what="retention to keep only the newest Backup",
    )
    wait_for(lambda: not locations[0].exists() and not locations[1].exists(), what="artifacts")
    assert locations[2].exists()
    status = get_json("backupschedule", "nightly", "-n", namespace)["status"]
    assert status["pruned"] == 2 and status["phase"] == "Suspended"
    assert events(namespace, "BackupsPruned")


def test_a_tenant_backup_block_keeps_an_owned_tenant_schedule(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    apply(database_secret(app_database.url), namespace)
    block = {
        "schedule": "30 3 * * *",
        "timeZone": "Europe/Madrid",
        "retention": {"keepDaily": 7},
        "storage": {"volume": {"path": str(tmp_path)}},
    }
    apply(tenant("acme", backup=block), namespace)
    made = wait_for(
        lambda: (
            kubectl(
                "get", "backupschedule", "acme-backup", "-n", namespace, "-o", "json", check=False
            ).stdout
        ),
        what="the tenant's BackupSchedule",
    )
    spec = json.loads(made)["spec"]
    assert spec["template"]["type"] == "tenant"
    assert spec["template"]["tenantRef"] == {"name": "acme"}
    assert spec["timeZone"] == "Europe/Madrid" and spec["retention"] == {"keepDaily": 7}
    owners = json.loads(made)["metadata"]["ownerReferences"]
    assert owners[0]["kind"] == "Tenant" and owners[0]["name"] == "acme"
    assert get_json("tenant", "acme", "-n", namespace)["status"]["backupSchedule"] == "acme-backup"

    apply(tenant("acme"), namespace)  # the block removed
    wait_for(
        lambda: (
            kubectl("get", "backupschedule", "acme-backup", "-n", namespace, check=False).returncode
            != 0
        ),
        what="the tenant's BackupSchedule to be deleted",
    )


def garbage_collector_sees_backups() -> None:
    """Wait until the garbage collector's discovery (every 30 s) has picked up the Backup CRD.

    Before that it neither orphans nor cascades to Backups, and later deletes any whose owner
    has gone meanwhile: in a cluster whose CRDs are seconds old, a Backup orphaned by the
    operator's delete would still disappear.
    """
    created = kubectl(
        "get", "crd", "backups.orion.io", "-o", "jsonpath={.metadata.creationTimestamp}"
    ).stdout
    age = datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(created)
    time.sleep(max(0.0, 40 - age.total_seconds()))


def test_removing_the_block_or_deleting_the_tenant_keeps_the_backups_already_taken(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    apply(database_secret(app_database.url), namespace)
    volume = {"volume": {"path": str(tmp_path), "minFreePercent": 1}}
    block = {"schedule": "30 3 * * *", "suspend": True, "storage": volume}

    def found(kind: str, name: str) -> dict[str, Any] | None:
        listed = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(listed.stdout) if listed.returncode == 0 else None

    def taken_by_the_tenant_schedule(backup_name: str) -> Path:
        """A Backup as the tenant's schedule makes it (labelled and owned), once Completed."""
        owner = wait_for(
            lambda: found("backupschedule", "acme-backup"), what="the tenant's BackupSchedule"
        )["metadata"]
        made = backup(backup_name, storage=volume)
        made["metadata"]["labels"] = {SCHEDULE_LABEL: "acme-backup"}
        made["metadata"]["ownerReferences"] = [owner_reference("acme-backup", owner["uid"])]
        apply(made, namespace)
        status = finished(backup_name, namespace)["status"]
        assert status["phase"] == "Completed", status
        return Path(status["location"].removeprefix("file://"))

    def orphaned(backup_name: str) -> bool:
        # Garbage collection has dealt with the deleted owner: it dropped the reference.
        kept = found("backup", backup_name)
        return kept is not None and not kept["metadata"].get("ownerReferences")

    def schedule_gone() -> bool:
        return found("backupschedule", "acme-backup") is None

    apply(tenant("acme", backup=block), namespace)
    first = taken_by_the_tenant_schedule("acme-backup-202612010330")
    garbage_collector_sees_backups()
    apply(tenant("acme"), namespace)  # the block removed
    wait_for(schedule_gone, what="the tenant's BackupSchedule to be deleted")
    wait_for(lambda: orphaned("acme-backup-202612010330"), what="the first Backup orphaned")

    apply(tenant("acme", backup=block), namespace)
    second = taken_by_the_tenant_schedule("acme-backup-202612020330")
    kubectl("delete", "tenant", "acme", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(schedule_gone, what="the deleted Tenant's BackupSchedule to go")
    wait_for(lambda: orphaned("acme-backup-202612020330"), what="the second Backup orphaned")

    kept = {"acme-backup-202612010330": first, "acme-backup-202612020330": second}
    for name, artifact in kept.items():
        assert phase(name, namespace) == "Completed"
        assert artifact.exists(), f"{name}: its artifact {artifact} was deleted"


def test_an_impossible_date_is_reported_in_status(operator: OperatorProcess, namespace: str):
    apply(schedule("never", schedule="0 0 31 2 *"), namespace)
    obj = wait_for(
        lambda: (
            (o := get_json("backupschedule", "never", "-n", namespace))
            .get("status", {})
            .get("phase")
            and o
        ),
        what="the schedule's status",
    )
    assert obj["status"]["phase"] == "Error"
    assert condition(obj)["reason"] == "InvalidSchedule"
    assert (
        "spec.schedule" in condition(obj)["message"] and "never fires" in condition(obj)["message"]
    )


def test_bad_schedules_are_rejected_at_apply_time_naming_the_field(
    operator: OperatorProcess, namespace: str
):
    cases = [
        (schedule("a", schedule="61 * * * *"), "spec.schedule"),
        (schedule("b", schedule="every day"), "spec.schedule"),
        (schedule("c", schedule="@daily", retention={"keepLast": -1}), "spec.retention.keepLast"),
        (
            schedule("d", schedule="@daily", retention={"maxAge": "a month"}),
            "spec.retention.maxAge",
        ),
        (schedule("e", schedule="@daily", template={"format": "tar"}), "spec.template.format"),
        (schedule("f" * 51, schedule="@daily"), "at most 50 characters"),
        (schedule("g"), "spec.schedule"),
    ]
    for manifest, field in cases:
        rejected = apply(manifest, namespace)
        assert rejected.returncode != 0, manifest
        assert field in rejected.stderr, (field, rejected.stderr)
    # The longest name allowed: its Backups' names are 63 characters.
    longest = apply(schedule("f" * 50, schedule="@daily", suspend=True), namespace)
    assert longest.returncode == 0, longest.stderr
