"""BackupSchedule handlers: create the due Backup, prune by retention, report the schedule.

A kopf timer checks each schedule every few seconds rather than a daemon sleeping until the next
fire time: the check is cheap, it also picks up finished Backups for pruning and status, and a
restarted operator needs nothing in memory to carry on (lastScheduleTime is in status).
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError
from pydantic import ValidationError

from orion_operator import API_GROUP, API_VERSION
from orion_operator.api.backup import SCHEDULE_LABEL
from orion_operator.api.backupschedule import BackupScheduleSpec, SchedulePhase
from orion_operator.api.common import ConditionStatus
from orion_operator.backup.retention import (
    BackupRecord,
    RetentionPolicy,
    backups_to_prune,
    parse_age,
)
from orion_operator.backup.schedule import (
    ScheduleError,
    backup_name,
    due_fire_time,
    parse_schedule,
)
from orion_operator.conditions import format_time, set_ready, stalled_status, utc_now
from orion_operator.kube.resources import BackupResource

BACKUPSCHEDULES = (API_GROUP, API_VERSION, "backupschedules")
CHECK_INTERVAL_SECONDS = 10.0
UNFINISHED = (None, "Pending", "Running")


def _patch_changed(patch: kopf.Patch, status: Any, desired: dict[str, Any]) -> None:
    """Only what differs from the status read: the timer runs often and mostly changes nothing."""
    for key, value in desired.items():
        if status.get(key) != value:
            patch.status[key] = value


def _report_error(
    body: kopf.Body, patch: kopf.Patch, reason: str, message: str, generation: Any
) -> None:
    """Phase Error and Ready False; the Warning only when the schedule turns bad."""
    if body.status.get("phase") != SchedulePhase.ERROR.value:
        kopf.warn(body, reason=reason, message=message)
    _patch_changed(
        patch,
        body.status,
        {
            # No Backup is made until the spec is fixed.
            **stalled_status(
                body.status,
                phase=SchedulePhase.ERROR.value,
                reason=reason,
                message=message,
                generation=generation,
            ),
            "nextScheduleTime": None,
        },
    )


def _time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _record(backup: dict[str, Any]) -> BackupRecord:
    status = backup.get("status") or {}
    created = _time(backup["metadata"].get("creationTimestamp")) or utc_now()
    return BackupRecord(
        name=backup["metadata"]["name"],
        phase=status.get("phase"),
        time=_time(status.get("completedAt")) or created,
    )


def _new_backup(
    body: kopf.Body, name: str, spec: BackupScheduleSpec, fire: datetime.datetime
) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Backup",
        "metadata": {
            "name": backup_name(name, fire),
            "labels": {SCHEDULE_LABEL: name},
            "annotations": {f"{API_GROUP}/scheduled-time": format_time(fire)},
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": "BackupSchedule",
                    "name": name,
                    "uid": body.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec.template.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


async def _owned_backups(memo: kopf.Memo, body: kopf.Body, namespace: str) -> list[dict]:
    """This schedule's Backups, except those already being deleted (finalizers at work)."""
    owned = []
    async for item in memo.kube.list(
        BackupResource, namespace=namespace, labels={SCHEDULE_LABEL: body.metadata.name}
    ):
        backup = item.to_dict()
        metadata = backup.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        if any(
            ref.get("uid") == body.metadata.uid for ref in metadata.get("ownerReferences") or []
        ):
            owned.append(backup)
    return owned


@kopf.timer(*BACKUPSCHEDULES, interval=CHECK_INTERVAL_SECONDS)
async def schedule_tick(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    namespace = namespace or "default"
    generation = body.metadata.get("generation")
    try:
        spec = BackupScheduleSpec.model_validate(body.spec)
    except ValidationError as error:
        # Only a CRD older than the operator lets such a spec in; report it, keep running.
        problems = "; ".join(
            f"spec.{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        _report_error(body, patch, "InvalidSpec", f"BackupSchedule {name}: {problems}", generation)
        return
    try:
        schedule = parse_schedule(spec.schedule, spec.time_zone)
    except ScheduleError as error:
        _report_error(body, patch, "InvalidSchedule", str(error), generation)
        return

    now = utc_now()
    backups = await _owned_backups(memo, body, namespace)
    records = [_record(backup) for backup in backups]
    active = sorted(r.name for r in records if r.phase in UNFINISHED)
    last_handled = _time(body.status.get("lastScheduleTime"))
    created = _time(body.metadata.get("creationTimestamp")) or now
    last_backup = body.status.get("lastBackup")

    fire = None
    if not spec.suspend:
        fire = due_fire_time(schedule, now, last_handled, created, spec.starting_deadline_seconds)
    if fire is not None:
        planned = backup_name(name, fire)
        if active and planned not in active:
            kopf.warn(
                body,
                reason="BackupSkipped",
                message=f"skipped the run of {format_time(fire)}: Backup {active[0]} is still "
                "running (concurrencyPolicy Forbid)",
            )
        else:
            try:
                await memo.kube.create(
                    BackupResource.from_dict(_new_backup(body, name, spec, fire)),
                    namespace=namespace,
                )
                kopf.event(
                    body,
                    type="Normal",
                    reason="BackupCreated",
                    message=f"Backup {planned} for the run of {format_time(fire)}",
                )
                active.append(planned)
            except ApiError as error:
                if error.status.code != 409:  # 409: this run's Backup already exists
                    raise
            last_backup = planned
        last_handled = fire

    pruned = await _prune(memo, body, namespace, spec, records, schedule.zone, now, logger)
    # The recorded time counts too: deleting Backups by hand does not undo a run that worked.
    success_times = [r.time for r in records if r.phase == "Completed"]
    recorded_success = _time(body.status.get("lastSuccessfulTime"))
    if recorded_success is not None:
        success_times.append(recorded_success)
    last_success = max(success_times, default=None)
    phase = SchedulePhase.SUSPENDED if spec.suspend else SchedulePhase.ACTIVE
    message = (
        "suspended: no new Backups"
        if spec.suspend
        else f"next run {format_time(schedule.next_after(now))}"
    )
    _patch_changed(
        patch,
        body.status,
        {
            "phase": phase.value,
            "observedGeneration": generation,
            "lastScheduleTime": format_time(last_handled) if last_handled else None,
            "lastSuccessfulTime": format_time(last_success) if last_success else None,
            "nextScheduleTime": None if spec.suspend else format_time(schedule.next_after(now)),
            "active": sorted(set(active) - set(pruned)),
            "lastBackup": last_backup,
            "pruned": int(body.status.get("pruned") or 0) + len(pruned),
            "conditions": set_ready(
                body.status.get("conditions"),
                status=ConditionStatus.TRUE,
                reason=phase.value,
                message=message,
                generation=generation,
            ),
        },
    )


async def _prune(
    memo: kopf.Memo,
    body: kopf.Body,
    namespace: str,
    spec: BackupScheduleSpec,
    records: list[BackupRecord],
    zone: Any,
    now: datetime.datetime,
    logger: Any,
) -> list[str]:
    retention = spec.retention
    policy = RetentionPolicy(
        keep_last=retention.keep_last,
        keep_daily=retention.keep_daily,
        keep_weekly=retention.keep_weekly,
        max_age=parse_age(retention.max_age) if retention.max_age else None,
    )
    pruned = []
    for victim in backups_to_prune(records, policy, now, zone):
        try:
            # The Backup's finalizer (deletionPolicy Delete) removes its artifact first.
            await memo.kube.delete(BackupResource, victim, namespace=namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
        pruned.append(victim)
    if pruned:
        logger.info(f"retention deleted {len(pruned)} Backup(s): {', '.join(pruned)}")
        kopf.event(
            body,
            type="Normal",
            reason="BackupsPruned",
            message=f"retention deleted {', '.join(pruned)}",
        )
    return pruned
