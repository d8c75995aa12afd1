"""One maintenance run: every task in the spec, each failing alone, results for status."""

from __future__ import annotations

import datetime
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg

from orion_operator.api.maintenance import DatabaseMaintenanceSpec, RetentionRule, TaskOutcome
from orion_operator.backup.retention import parse_age
from orion_operator.maintenance.tasks import (
    MaintenanceError,
    RetentionProgress,
    SizeReport,
    Timeouts,
    analyze,
    classify_error,
    delete_old_rows,
    in_window,
    maintenance_connection,
    size_report,
    vacuum,
)
from orion_operator.redaction import secrets_of_url


@dataclass(frozen=True)
class TaskResult:
    name: str
    outcome: TaskOutcome
    reason: str = ""
    message: str = ""
    duration_seconds: float = 0.0


@dataclass
class MaintenanceRun:
    tasks: list[TaskResult] = field(default_factory=list)
    retention: list[RetentionProgress] = field(default_factory=list)
    report: SizeReport | None = None

    @property
    def failed(self) -> list[TaskResult]:
        """Failed and refused tasks: both leave the database short of what the spec asks."""
        return [task for task in self.tasks if task.outcome is not TaskOutcome.SUCCEEDED]

    def summary(self) -> str:
        if not self.tasks:
            return "no tasks"
        if not self.failed:
            return f"{len(self.tasks)} task(s) succeeded"
        return "; ".join(f"{t.name} {t.outcome.value.lower()}: {t.message}" for t in self.failed)


def _retention(
    rule: RetentionRule, cutoff: datetime.datetime, progress: RetentionProgress, field_name: str
) -> Callable[[psycopg.AsyncConnection], Awaitable[str]]:
    async def work(connection: psycopg.AsyncConnection) -> str:
        await delete_old_rows(connection, rule, cutoff, progress, field_name)
        return f"deleted {progress.deleted} row(s) in {progress.batches} batch(es)"

    return work


async def run_maintenance(
    url: str, spec: DatabaseMaintenanceSpec, now: datetime.datetime
) -> MaintenanceRun:
    """Retention first (it makes dead rows), then VACUUM, ANALYZE, and the report last, so the
    sizes are the ones after this run. A failing task is recorded and the next one runs."""
    timeouts = Timeouts(spec.statement_timeout_seconds, spec.lock_timeout_seconds)
    zone = zoneinfo.ZoneInfo(spec.time_zone)
    secrets = secrets_of_url(url)
    tasks = spec.tasks
    run = MaintenanceRun()

    async def task(name: str, work: Callable[[psycopg.AsyncConnection], Awaitable[str]]) -> None:
        started = time.monotonic()
        try:
            async with maintenance_connection(url, timeouts) as connection:
                message = await work(connection)
            outcome, reason = TaskOutcome.SUCCEEDED, "Succeeded"
        except (MaintenanceError, psycopg.Error) as error:
            reason, message = classify_error(error, timeouts, secrets)
            outcome = TaskOutcome.REFUSED if reason == "OutsideWindow" else TaskOutcome.FAILED
        duration = round(time.monotonic() - started, 3)
        run.tasks.append(TaskResult(name, outcome, reason, message, duration))

    for index, rule in enumerate(tasks.retention):
        progress = RetentionProgress(rule.table)
        run.retention.append(progress)
        cutoff = now - parse_age(rule.older_than)
        work = _retention(rule, cutoff, progress, f"spec.tasks.retention[{index}]")
        await task(f"retention/{rule.table}", work)

    if tasks.vacuum is not None:
        vacuum_spec = tasks.vacuum

        async def vacuum_task(connection: psycopg.AsyncConnection) -> str:
            if vacuum_spec.full:
                window = vacuum_spec.window
                if window is None or not in_window(window, now, zone):
                    span = f"{window.start}-{window.end}" if window else "none"
                    raise MaintenanceError(
                        "OutsideWindow",
                        f"VACUUM FULL locks each table: refused at "
                        f"{now.astimezone(zone):%H:%M} {spec.time_zone}, outside "
                        f"spec.tasks.vacuum.window ({span})",
                    )
            count = await vacuum(connection, vacuum_spec.tables, vacuum_spec.full)
            return f"{'VACUUM (FULL, ANALYZE)' if vacuum_spec.full else 'VACUUM (ANALYZE)'} " + (
                f"of {count} table(s)"
            )

        await task("vacuum", vacuum_task)

    if tasks.analyze is not None:
        analyze_tables = tasks.analyze.tables

        async def analyze_task(connection: psycopg.AsyncConnection) -> str:
            return f"ANALYZE of {await analyze(connection, analyze_tables)} table(s)"

        await task("analyze", analyze_task)

    if tasks.report is not None:
        top = tasks.report.top

        async def report_task(connection: psycopg.AsyncConnection) -> str:
            run.report = await size_report(connection, top)
            usage = run.report.connections
            assert usage is not None
            return (
                f"{len(run.report.tables)} largest table(s); connections "
                f"{usage.in_use}/{usage.max_connections}"
            )

        await task("report", report_task)
    return run
