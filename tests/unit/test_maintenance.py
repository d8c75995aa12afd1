"""Maintenance tasks on a real PostgreSQL: retention, VACUUM FULL's window, report, timeouts."""

from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any

import psycopg
import pytest

from orion_operator.api.maintenance import DatabaseMaintenanceSpec, TaskOutcome
from orion_operator.maintenance.run import MaintenanceRun, run_maintenance
from tests.conftest import AppDatabase

NOW = datetime.datetime(2026, 11, 28, 14, 0, tzinfo=datetime.UTC)


def spec(**tasks: Any) -> DatabaseMaintenanceSpec:
    return DatabaseMaintenanceSpec.model_validate(
        {"schedule": "@daily", "timeZone": "Europe/Madrid", "tasks": tasks}
    )


def run(db: AppDatabase, maintenance: DatabaseMaintenanceSpec) -> MaintenanceRun:
    return asyncio.run(run_maintenance(db.url, maintenance, NOW))


def seed_audit_log(db: AppDatabase, old: int, new: int) -> None:
    # Old rows two years back, new rows a day back (Prisma stores UTC in timestamp columns).
    db.execute(
        """
        INSERT INTO "AuditLog" ("action", "createdAt")
        SELECT 'old', %s::timestamp - make_interval(secs => g) FROM generate_series(1, %s) g
        """,
        (NOW.replace(tzinfo=None) - datetime.timedelta(days=730), old),
    )
    db.execute(
        """
        INSERT INTO "AuditLog" ("action", "createdAt")
        SELECT 'new', %s::timestamp FROM generate_series(1, %s)
        """,
        (NOW.replace(tzinfo=None) - datetime.timedelta(days=1), new),
    )


def outcome(result: MaintenanceRun, name: str) -> Any:
    return next(task for task in result.tasks if task.name == name)


def test_retention_deletes_exactly_the_old_rows_in_several_batches(app_database: AppDatabase):
    seed_audit_log(app_database, old=12_000, new=300)
    # One row just either side of the cutoff (365 days before NOW).
    cutoff = NOW.replace(tzinfo=None) - datetime.timedelta(days=365)
    app_database.execute(
        'INSERT INTO "AuditLog" ("action", "createdAt") '
        "VALUES ('edge-old', %s), ('edge-new', %s)",
        (cutoff - datetime.timedelta(milliseconds=1), cutoff),
    )
    result = run(
        app_database,
        spec(
            retention=[
                {
                    "table": "AuditLog",
                    "timestampColumn": "createdAt",
                    "olderThan": "365d",
                    "batchSize": 5000,
                }
            ]
        ),
    )
    assert outcome(result, "retention/AuditLog").outcome is TaskOutcome.SUCCEEDED
    (progress,) = result.retention
    assert (progress.deleted, progress.batches) == (12_001, 3)
    left = app_database.query('SELECT "action", count(*) FROM "AuditLog" GROUP BY 1 ORDER BY 1')
    assert left == [("edge-new", 1), ("new", 300)]


def test_size_report_matches_postgresql_and_connection_use(app_database: AppDatabase):
    seed_audit_log(app_database, old=5000, new=0)
    result = run(app_database, spec(report={"top": 3}))
    assert outcome(result, "report").outcome is TaskOutcome.SUCCEEDED
    assert result.report is not None
    expected = app_database.query(
        """
        SELECT tablename, pg_total_relation_size(format('%%I', tablename)::regclass),
               pg_size_pretty(pg_total_relation_size(format('%%I', tablename)::regclass))
        FROM pg_tables WHERE schemaname = 'public'
        ORDER BY 2 DESC, 1 LIMIT 3
        """
    )
    got = [(t.name, t.total_bytes, t.total) for t in result.report.tables]
    assert got == expected
    assert got[0][0] == "AuditLog"
    usage = result.report.connections
    max_connections = app_database.query("SHOW max_connections")[0][0]
    assert usage is not None and usage.max_connections == int(str(max_connections))
    assert 0 <= usage.in_use < usage.max_connections


def test_vacuum_full_outside_the_window_is_refused_and_the_others_still_run(
    app_database: AppDatabase,
):
    # 14:00 UTC is 15:00 in Madrid: outside 02:00-04:00.
    result = run(
        app_database,
        spec(
            vacuum={"full": True, "window": {"start": "02:00", "end": "04:00"}},
            analyze={"tables": ["Sale"]},
            report={},
        ),
    )
    vacuum = outcome(result, "vacuum")
    assert vacuum.outcome is TaskOutcome.REFUSED and vacuum.reason == "OutsideWindow"
    assert "15:00 Europe/Madrid" in vacuum.message
    assert outcome(result, "analyze").outcome is TaskOutcome.SUCCEEDED
    assert outcome(result, "report").outcome is TaskOutcome.SUCCEEDED
    assert [t.name for t in result.failed] == ["vacuum"]


def test_vacuum_full_inside_the_window_rewrites_the_table(app_database: AppDatabase):
    seed_audit_log(app_database, old=2000, new=0)
    before = app_database.query("""SELECT pg_relation_filenode('"AuditLog"')""")[0][0]
    result = run(
        app_database,
        spec(
            vacuum={
                "tables": ["AuditLog"],
                "full": True,
                "window": {"start": "15:00", "end": "16:00"},
            }
        ),
    )
    assert outcome(result, "vacuum").outcome is TaskOutcome.SUCCEEDED
    # VACUUM FULL writes a new file for the table.
    assert app_database.query("""SELECT pg_relation_filenode('"AuditLog"')""")[0][0] != before


def test_a_missing_table_or_column_fails_that_task_only(app_database: AppDatabase):
    seed_audit_log(app_database, old=10, new=0)
    result = run(
        app_database,
        spec(
            retention=[
                {"table": "NoSuchTable", "timestampColumn": "createdAt", "olderThan": "1d"},
                {"table": "AuditLog", "timestampColumn": "noSuchColumn", "olderThan": "1d"},
                {"table": "AuditLog", "timestampColumn": "action", "olderThan": "1d"},
                {"table": "AuditLog", "timestampColumn": "createdAt", "olderThan": "1d"},
            ],
            analyze={"tables": ["Sale", "Missing"]},
        ),
    )
    reasons = [(t.name, t.outcome, t.reason) for t in result.tasks]
    assert reasons == [
        ("retention/NoSuchTable", TaskOutcome.FAILED, "TableNotFound"),
        ("retention/AuditLog", TaskOutcome.FAILED, "ColumnNotFound"),
        ("retention/AuditLog", TaskOutcome.FAILED, "ColumnNotTimestamp"),
        ("retention/AuditLog", TaskOutcome.SUCCEEDED, "Succeeded"),
        ("analyze", TaskOutcome.FAILED, "TableNotFound"),
    ]
    assert '"NoSuchTable"' in result.tasks[0].message
    assert "spec.tasks.retention[0].table" in result.tasks[0].message
    assert '"Missing"' in result.tasks[4].message
    assert result.retention[3].deleted == 10


@pytest.mark.parametrize(
    ("timeouts", "reason"),
    [
        ({"statementTimeoutSeconds": 1, "lockTimeoutSeconds": 30}, "StatementTimeout"),
        ({"statementTimeoutSeconds": 30, "lockTimeoutSeconds": 1}, "LockTimeout"),
    ],
)
def test_a_held_lock_times_the_task_out_and_the_others_run(
    app_database: AppDatabase, timeouts: dict[str, int], reason: str
):
    seed_audit_log(app_database, old=100, new=0)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(app_database.url) as conn:
            conn.execute('LOCK TABLE "AuditLog" IN SHARE MODE')  # blocks writes, not reads
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        maintenance = DatabaseMaintenanceSpec.model_validate(
            {
                "schedule": "@daily",
                **timeouts,
                "tasks": {
                    "retention": [
                        {"table": "AuditLog", "timestampColumn": "createdAt", "olderThan": "1d"}
                    ],
                    "analyze": {"tables": ["Sale"]},
                    "report": {"top": 1},
                },
            }
        )
        result = run(app_database, maintenance)
    finally:
        release.set()
        holder.join()
    retention = outcome(result, "retention/AuditLog")
    assert retention.outcome is TaskOutcome.FAILED and retention.reason == reason
    assert retention.duration_seconds < 5
    assert outcome(result, "analyze").outcome is TaskOutcome.SUCCEEDED
    assert outcome(result, "report").outcome is TaskOutcome.SUCCEEDED


def test_no_credentials_in_an_unreachable_databases_message(app_database: AppDatabase):
    url = app_database.url.replace(app_database.name, "no_such_database")
    result = asyncio.run(run_maintenance(url, spec(report={}), NOW))
    (task,) = result.tasks
    assert task.reason == "DatabaseUnreachable"
    assert app_database.password not in task.message
