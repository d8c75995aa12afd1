"""DatabaseMaintenance handlers: run the tasks when the schedule fires or on demand, report.

A kopf timer checks each object every few seconds, like BackupSchedule: the check is cheap,
the on-demand annotation is noticed within one interval, and everything a restarted operator
needs (last fire time, last trigger) is in status. The tasks use async psycopg, so a long
retention run never blocks the event loop.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from orion_operator import API_GROUP, API_VERSION
from orion_operator.alerts.model import Alert, ObjectRef, Severity, firing_alert
from orion_operator.api.common import ConditionStatus
from orion_operator.api.maintenance import (
    RUN_ANNOTATION,
    DatabaseMaintenanceSpec,
    MaintenancePhase,
)
from orion_operator.backup.schedule import ScheduleError, due_fire_time, parse_schedule
from orion_operator.conditions import (
    READY,
    Progress,
    format_time,
    set_progress,
    set_ready,
    stalled_status,
    utc_now,
)
from orion_operator.kube.resources import DatabaseMaintenanceResource, merge_patch_status
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.maintenance.run import MaintenanceRun, run_maintenance

DATABASEMAINTENANCES = (API_GROUP, API_VERSION, "databasemaintenances")
CHECK_INTERVAL_SECONDS = 5.0


def _time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _failed_alert(
    namespace: str, name: str, message: str, run: MaintenanceRun | None = None
) -> Alert:
    return firing_alert(
        ObjectRef("DatabaseMaintenance", namespace, name),
        check="maintenance",
        reason="MaintenanceFailed",
        severity=Severity.WARNING,
        message=message,
        details={t.name: f"{t.reason}: {t.message}" for t in run.failed} if run else None,
    )


def _last_run(run: MaintenanceRun, started: datetime.datetime, trigger: str) -> dict[str, Any]:
    report = None
    if run.report is not None:
        usage = run.report.connections
        report = {
            "tables": [
                {"name": t.name, "totalBytes": t.total_bytes, "total": t.total}
                for t in run.report.tables
            ],
            "connections": None
            if usage is None
            else {
                "used": usage.in_use,
                "max": usage.max_connections,
                "percent": usage.used_percent,
            },
        }
    return {
        "startedAt": format_time(started),
        "trigger": trigger,
        "tasks": [
            {
                "name": t.name,
                "result": t.outcome.value,
                "reason": t.reason,
                "message": t.message,
                "durationSeconds": t.duration_seconds,
            }
            for t in run.tasks
        ],
        "retention": [
            {"table": p.table, "deleted": p.deleted, "batches": p.batches} for p in run.retention
        ],
        "report": report,
    }


def _error(body: kopf.Body, patch: kopf.Patch, reason: str, message: str) -> None:
    """A spec the operator cannot use: reported once as an Event, kept in status."""
    generation = body.metadata.get("generation")
    if body.status.get("phase") != MaintenancePhase.ERROR.value:
        kopf.warn(body, reason=reason, message=message)
    # Nothing runs until the spec is fixed.
    patch.status.update(
        {
            **stalled_status(
                body.status,
                phase=MaintenancePhase.ERROR.value,
                reason=reason,
                message=message,
                generation=generation,
            ),
            "nextRunTime": None,
        }
    )


@kopf.timer(*DATABASEMAINTENANCES, interval=CHECK_INTERVAL_SECONDS)
async def maintenance_tick(
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
        spec = DatabaseMaintenanceSpec.model_validate(body.spec)
        schedule = parse_schedule(spec.schedule, spec.time_zone)
    except ScheduleError as error:
        _error(body, patch, "InvalidSchedule", str(error))
        return
    except ValidationError as error:
        _error(body, patch, "InvalidSpec", str(error).splitlines()[0])
        return

    now = utc_now()
    last_handled = _time(body.status.get("lastScheduleTime"))
    created = _time(body.metadata.get("creationTimestamp")) or now
    requested = body.metadata.annotations.get(RUN_ANNOTATION)
    on_demand = requested is not None and requested != body.status.get("lastTrigger")
    fire = None if spec.suspend else due_fire_time(schedule, now, last_handled, created, None)
    next_run = None if spec.suspend else format_time(schedule.next_after(now))

    if fire is None and not on_demand:
        phase = body.status.get("phase")
        if spec.suspend:
            phase = MaintenancePhase.SUSPENDED.value
        elif phase in (None, MaintenancePhase.SUSPENDED.value, MaintenancePhase.ERROR.value):
            phase = MaintenancePhase.SCHEDULED.value
        idle = {"phase": phase, "nextRunTime": next_run, "observedGeneration": generation}
        if any(body.status.get(key) != value for key, value in idle.items()):
            ready = condition_after_idle(body, phase, next_run)
            patch.status.update({**idle, "conditions": ready})
        return

    trigger = f"annotation {requested}" if on_demand else f"schedule {format_time(fire or now)}"
    await merge_patch_status(
        memo.kube,
        DatabaseMaintenanceResource,
        name,
        namespace,
        {
            "phase": MaintenancePhase.RUNNING.value,
            "conditions": set_progress(
                body.status.get("conditions"),
                Progress.RECONCILING,
                reason="Running",
                message=f"running the tasks ({trigger})",
                generation=generation,
            ),
        },
    )
    failure: tuple[str, str] | None = None
    run: MaintenanceRun | None = None
    try:
        url = await read_secret_key(
            memo.kube,
            namespace,
            spec.database.secret_ref,
            referrer=f"DatabaseMaintenance {name}",
            field="spec.database.secretRef",
        )
    except SecretUnavailable as error:
        failure = (error.reason, error.message)
    else:
        run = await run_maintenance(url, spec, now)
    if run is not None and run.failed:
        failure = ("TasksFailed", run.summary())

    if failure is None:
        assert run is not None
        status, reason, message = ConditionStatus.TRUE, "Succeeded", run.summary()
        kopf.event(body, type="Normal", reason="MaintenanceSucceeded", message=message)
    else:
        status, (reason, message) = ConditionStatus.FALSE, failure
        kopf.warn(body, reason="MaintenanceFailed", message=message)
        memo.alert_sender.submit(
            _failed_alert(namespace, name, run.summary(), run)
            if run is not None
            else _failed_alert(namespace, name, f"{reason}: {message}")
        )
    logger.info(f"maintenance trigger={trigger!r} ready={status.value} reason={reason}")
    update: dict[str, Any] = {
        "phase": (MaintenancePhase.SUCCEEDED if failure is None else MaintenancePhase.FAILED).value,
        "observedGeneration": generation,
        "lastRunTime": format_time(now),
        "nextRunTime": next_run,
        # A failed run is not Stalled: the next scheduled run tries again by itself.
        "conditions": set_ready(
            body.status.get("conditions"),
            status=status,
            reason=reason,
            message=message,
            generation=generation,
        ),
    }
    if run is not None:
        update["lastRun"] = _last_run(run, now, trigger)
    if fire is not None:
        update["lastScheduleTime"] = format_time(fire)
    if on_demand:
        update["lastTrigger"] = requested
    patch.status.update(update)


def condition_after_idle(body: kopf.Body, phase: str, next_run: str | None) -> list[Any]:
    """Ready stays as the last run left it; before any run, when suspended, or after a spec
    error was fixed, it is True with the schedule's state."""
    conditions = body.status.get("conditions")
    ready = next((c for c in conditions or [] if c.get("type") == READY), None)
    keeps_last_run = phase != MaintenancePhase.SUSPENDED.value and (
        ready is not None and ready.get("reason") not in ("InvalidSchedule", "InvalidSpec")
    )
    if keeps_last_run and body.status.get("lastRunTime"):
        return set_progress(
            conditions,
            Progress.SETTLED,
            reason=phase,
            message="",
            generation=body.metadata.get("generation"),
        )
    message = "suspended: no scheduled runs" if next_run is None else f"next run {next_run}"
    return set_ready(
        conditions,
        status=ConditionStatus.TRUE,
        reason=phase,
        message=message,
        generation=body.metadata.get("generation"),
    )
