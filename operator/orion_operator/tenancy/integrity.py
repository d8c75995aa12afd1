"""The runbook's multi-tenant integrity check, automated and read-only.

Two kinds of violation, counted in every tenant-scoped table (tables with a "tenantId" column):
rows with a NULL "tenantId" (data no tenant owns, unless the allow-list accepts it, like the
platform admins in "User"), and rows whose "tenantId" names no row in the tenants table
(orphans, possible when the application has no foreign key). Everything runs in one read-only
transaction, so an allow-list condition cannot write either.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.alerts.state import AlertPolicy, CheckState, Observation, advance
from orion_operator.tenancy.database import ConnectionPool, session
from orion_operator.tenancy.errors import TenancyError
from orion_operator.tenancy.rows import (
    DEFAULT_TENANT_TABLE,
    TENANT_COLUMN,
    TenantTable,
    tenant_scoped_tables,
)


class AllowListInvalid(TenancyError):
    reason = "IntegrityAllowListInvalid"


@dataclass(frozen=True)
class IntegrityReport:
    """Counts per table; tables with nothing to report are left out."""

    null_tenant_rows: dict[str, int] = field(default_factory=dict)
    allowed_null_tenant_rows: dict[str, int] = field(default_factory=dict)
    orphan_rows: dict[str, int] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return sum(self.null_tenant_rows.values()) + sum(self.orphan_rows.values())

    @property
    def clean(self) -> bool:
        return self.violations == 0

    def summary(self) -> str:
        """One line for status, Events and alerts."""
        if self.clean:
            allowed = sum(self.allowed_null_tenant_rows.values())
            return "no rows without a tenant" + (
                f" ({allowed} allowed by the allow-list)" if allowed else ""
            )
        parts = [
            f'{table}: {count} row(s) with a NULL "tenantId"'
            for table, count in sorted(self.null_tenant_rows.items())
        ]
        parts += [
            f'{table}: {count} row(s) whose "tenantId" names no tenant'
            for table, count in sorted(self.orphan_rows.items())
        ]
        return "; ".join(parts)


def _table_counts(schema: str, table: str, allow: str | None, tenants: TenantTable) -> sql.Composed:
    # The allow-list condition is SQL from the operator's configuration, not from a Tenant.
    allowed = sql.SQL(f"COALESCE(({allow}), false)") if allow else sql.SQL("false")
    return sql.SQL(
        """
        SELECT {label},
          count(*) FILTER (WHERE t.{col} IS NULL AND NOT {allowed}),
          count(*) FILTER (WHERE t.{col} IS NULL AND {allowed}),
          count(*) FILTER (WHERE t.{col} IS NOT NULL AND NOT EXISTS
            (SELECT 1 FROM {tenants} x WHERE x.{id} = t.{col}))
        FROM {schema}.{table} t
        """
    ).format(
        label=sql.Literal(table),
        col=sql.Identifier(TENANT_COLUMN),
        allowed=allowed,
        tenants=sql.SQL("{}.{}").format(
            sql.Identifier(tenants.schema), sql.Identifier(tenants.table)
        ),
        id=sql.Identifier(tenants.id_column),
        schema=sql.Identifier(schema),
        table=sql.Identifier(table),
    )


async def check_integrity(
    conn: psycopg.AsyncConnection,
    allow_list: Mapping[str, str] | None = None,
    table: TenantTable = DEFAULT_TENANT_TABLE,
) -> IntegrityReport:
    """Count violations on `conn` (the caller holds a read-only transaction)."""
    allow_list = allow_list or {}
    report = IntegrityReport()
    for name in await tenant_scoped_tables(conn, table.schema):
        if name == table.table:
            continue
        try:
            async with conn.transaction():  # a savepoint: a bad condition names its table
                cursor = await conn.execute(
                    _table_counts(table.schema, name, allow_list.get(name), table)
                )
                row = await cursor.fetchone()
        except psycopg.errors.SyntaxError as error:
            raise AllowListInvalid(
                f'integrity allow-list condition for table "{name}" is not valid SQL: '
                f"{str(error).splitlines()[0]}"
            ) from None
        except (psycopg.errors.UndefinedColumn, psycopg.errors.DatatypeMismatch) as error:
            raise AllowListInvalid(
                f'integrity allow-list condition for table "{name}": {str(error).splitlines()[0]}'
            ) from None
        assert row is not None
        _, null_rows, allowed_rows, orphans = row
        if null_rows:
            report.null_tenant_rows[name] = int(null_rows)
        if allowed_rows:
            report.allowed_null_tenant_rows[name] = int(allowed_rows)
        if orphans:
            report.orphan_rows[name] = int(orphans)
    return report


async def run_integrity_check(
    url: str,
    allow_list: Mapping[str, str] | None = None,
    *,
    table: TenantTable = DEFAULT_TENANT_TABLE,
    connect_timeout_seconds: int = 5,
    pool: ConnectionPool | None = None,
) -> IntegrityReport:
    async with session(url, pool=pool, connect_timeout_seconds=connect_timeout_seconds) as conn:
        await conn.set_autocommit(False)
        await conn.set_read_only(True)
        try:
            return await check_integrity(conn, allow_list, table)
        finally:
            await conn.rollback()
            # As it was: a pooled connection goes back to the next caller in autocommit.
            await conn.set_read_only(None)
            await conn.set_autocommit(True)


@dataclass(frozen=True)
class CheckedIntegrity:
    """A check's outcome: the report or the error that stopped it, and when it ran."""

    report: IntegrityReport | None
    error: TenancyError | None
    checked_at: datetime.datetime
    started: float  # on the shared checks' clock, for its age

    def result(self) -> IntegrityReport:
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


class SharedIntegrityChecks:
    """At most one integrity check per database at a time, its outcome shared for `max_age`.

    The queries count the whole database, and every Tenant on it reconciles and resyncs: one
    check per Tenant would scan each tenant-scoped table as many times a minute as there are
    Tenants. Reconciles that ask while a check runs wait for it; one asking later reuses an
    outcome younger than `max_age` (a failure too, so an unreachable database is not dialled
    once per Tenant in a queue). A `fresh` request (the on-demand annotation) reuses only a
    check that started after it was made.
    """

    def __init__(
        self, max_age_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._latest: dict[tuple[str, ...], CheckedIntegrity] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def check(
        self,
        url: str,
        table: TenantTable,
        run: Callable[[], Awaitable[IntegrityReport]],
        *,
        fresh: bool = False,
    ) -> CheckedIntegrity:
        # The URL, not only the database: another role may see other rows.
        key = (url, table.schema, table.table, table.id_column)
        asked = self._clock()
        async with self._locks.setdefault(key, asyncio.Lock()):
            latest = self._latest.get(key)
            if latest is not None and (
                latest.started >= asked
                if fresh
                else self._clock() - latest.started < self.max_age_seconds
            ):
                return latest
            started, checked_at = self._clock(), datetime.datetime.now(datetime.UTC)
            report, error = None, None
            try:
                report = await run()
            except TenancyError as failure:
                error = failure
            self._latest[key] = CheckedIntegrity(report, error, checked_at, started)
            return self._latest[key]


# A violation is a fact, not a flaky probe: one check is enough either way, and a violation
# that persists is repeated only after the interval.
INTEGRITY_POLICY = AlertPolicy(failure_threshold=1, success_threshold=1)
INTEGRITY_CHECK = "integrity"


def integrity_alert_step(
    prior: CheckState,
    report: IntegrityReport,
    *,
    subject: ObjectRef,
    subject_uid: str,
    now: datetime.datetime,
    database: str = "",
    policy: AlertPolicy = INTEGRITY_POLICY,
) -> tuple[CheckState, Alert | None]:
    """The next alert state for this report, and the alert to send (warning, or the recovery)."""
    seen = Observation(
        bad=not report.clean,
        severity=Severity.WARNING,
        reason="IntegrityViolation",
        message=report.summary(),
    )
    state, transition = advance(prior, seen, now, policy)
    if transition is None:
        return state, None
    if transition is Transition.RESOLVED:
        severity, reason = Severity.INFO, "IntegrityRestored"
        title = f"IntegrityRestored: {subject}"
        message = f"every row has a tenant again, after: {prior.message or 'a violation'}"
    else:
        severity, reason = Severity.WARNING, "IntegrityViolation"
        again = " (still there)" if transition is Transition.REPEAT else ""
        title = f"IntegrityViolation: {subject}{again}"
        message = report.summary()
    alert = Alert(
        id=str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{subject_uid}/{INTEGRITY_CHECK}/{now.isoformat()}")
        ),
        check=INTEGRITY_CHECK,
        reason=reason,
        severity=severity,
        transition=transition,
        title=title,
        message=message,
        subject=subject,
        occurred_at=now,
        details={
            "check": INTEGRITY_CHECK,
            "violations": str(report.violations),
            "database": database,
        },
    )
    return state, alert


def database_of(url: str) -> str:
    """`dbname on host:port`: which database a check ran on, without the credentials."""
    parts = psycopg.conninfo.conninfo_to_dict(url)
    return f"{parts.get('dbname', '')} on {parts.get('host', '')}:{parts.get('port', 5432)}"


class IntegrityAlertGate:
    """One integrity alert per database and transition, however many Tenants share it.

    The check counts the whole database, so every Tenant on it sees the same violation at about
    the same time; each keeps its own state and Event, and the first one's alert stands for all.
    The same reason again for that database within half the repeat interval is dropped: the
    Tenants' 4-hourly reminders collapse into one, while a flap (violation, restored, violation)
    still sends each change. In memory only: after a restart each Tenant's state in status
    already holds the transitions it made, so nothing fires again for them.
    """

    def __init__(self, policy: AlertPolicy = INTEGRITY_POLICY) -> None:
        self.window = policy.repeat_interval / 2
        self._last: dict[str, tuple[str, datetime.datetime]] = {}

    def admits(self, database: str, alert: Alert) -> bool:
        last = self._last.get(database)
        if last is not None:
            reason, at = last
            if reason == alert.reason and alert.occurred_at - at < self.window:
                return False
        self._last[database] = (alert.reason, alert.occurred_at)
        return True
