"""The maintenance tasks, each on its own connection, each statement under the spec's timeouts.

No kopf here: the handler passes the spec and the database URL and writes what comes back.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from orion_operator.api.maintenance import RetentionRule, VacuumWindow
from orion_operator.redaction import redact, secrets_of_url
from orion_operator.rollout.connections import USAGE_QUERY
from orion_operator.rollout.scaling import ConnectionUsage

TIMESTAMP_TYPES = ("timestamp without time zone", "timestamp with time zone", "date")
# The runbook's size query, over every user schema; tables outside "public" carry their schema.
SIZE_QUERY = """
SELECT CASE WHEN schemaname = 'public' THEN tablename ELSE schemaname || '.' || tablename END,
       pg_total_relation_size(format('%%I.%%I', schemaname, tablename)::regclass),
       pg_size_pretty(pg_total_relation_size(format('%%I.%%I', schemaname, tablename)::regclass))
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 2 DESC, 1
LIMIT %s
"""
USER_TABLES_QUERY = """
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


class MaintenanceError(Exception):
    """A task's own failure; `reason` is the CamelCase word for status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Timeouts:
    statement_seconds: int
    lock_seconds: int


@asynccontextmanager
async def maintenance_connection(
    url: str, timeouts: Timeouts, *, connect_timeout_seconds: int = 10
) -> AsyncIterator[psycopg.AsyncConnection]:
    """Autocommit (VACUUM refuses transaction blocks); the timeouts cover every statement, and
    the session is UTC so timestamp columns compare with UTC cutoffs as the application wrote."""
    options = (
        f"-c statement_timeout={timeouts.statement_seconds * 1000} "
        f"-c lock_timeout={timeouts.lock_seconds * 1000} -c TimeZone=UTC"
    )
    try:
        connection = await psycopg.AsyncConnection.connect(
            url,
            autocommit=True,
            connect_timeout=connect_timeout_seconds,
            options=options,
            application_name="orion-operator-maintenance",
        )
    except psycopg.Error as error:
        raise MaintenanceError(
            "DatabaseUnreachable",
            f"cannot connect to PostgreSQL: {redact(str(error).strip(), secrets_of_url(url))}",
        ) from None
    async with connection:
        yield connection


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    def sql(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"


async def resolve_tables(
    connection: psycopg.AsyncConnection, tables: list[str], field_name: str
) -> list[TableRef]:
    """The named tables as the search path finds them, or all user tables when none are named;
    a name that is not a table fails the task, naming it."""
    if not tables:
        cursor = await connection.execute(USER_TABLES_QUERY)
        return [TableRef(str(s), str(t)) for s, t in await cursor.fetchall()]
    found = []
    for table in tables:
        cursor = await connection.execute(
            """
            SELECT n.nspname, c.relname FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass(format('%%I', %s::text)) AND c.relkind IN ('r', 'p', 'm')
            """,
            (table,),
        )
        row = await cursor.fetchone()
        if row is None:
            raise MaintenanceError(
                "TableNotFound", f'table "{table}" does not exist ({field_name})'
            )
        found.append(TableRef(str(row[0]), str(row[1])))
    return found


async def analyze(connection: psycopg.AsyncConnection, tables: list[str]) -> int:
    """ANALYZE each table (one statement each, so each gets the full timeout); tables done."""
    resolved = await resolve_tables(connection, tables, "spec.tasks.analyze.tables")
    for table in resolved:
        await _on_table(connection, sql.SQL("ANALYZE {}").format(table.sql()), table)
    return len(resolved)


def in_window(window: VacuumWindow, now: datetime.datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """start <= local time < end, on the schedule's clock."""
    local = now.astimezone(zone).strftime("%H:%M")
    return window.start <= local < window.end


async def vacuum(connection: psycopg.AsyncConnection, tables: list[str], full: bool) -> int:
    """VACUUM (ANALYZE), or (FULL, ANALYZE), table by table; the window is checked by the caller."""
    resolved = await resolve_tables(connection, tables, "spec.tasks.vacuum.tables")
    options = sql.SQL("(FULL, ANALYZE)" if full else "(ANALYZE)")
    for table in resolved:
        statement = sql.SQL("VACUUM {} {}").format(options, table.sql())
        await _on_table(connection, statement, table)
    return len(resolved)


async def _on_table(
    connection: psycopg.AsyncConnection, statement: sql.Composed, table: TableRef
) -> None:
    try:
        await connection.execute(statement)
    except psycopg.Error as error:
        # Name the table the failure happened on; classify_error keeps the kind of failure.
        error.add_note(f'on table "{table}"')
        raise


@dataclass
class RetentionProgress:
    """Filled in as batches commit, so a failure midway still reports what was deleted."""

    table: str
    deleted: int = 0
    batches: int = 0


async def delete_old_rows(
    connection: psycopg.AsyncConnection,
    rule: RetentionRule,
    cutoff: datetime.datetime,
    progress: RetentionProgress,
    field_name: str,
) -> None:
    """Delete rows with `timestampColumn < cutoff`, `batchSize` at a time, one short
    transaction per batch, so no lock outlives a batch. Rows a writer holds locked are skipped
    (SKIP LOCKED), never waited for: a later batch or the next run takes them."""
    (table,) = await resolve_tables(connection, [rule.table], f"{field_name}.table")
    cursor = await connection.execute(
        """
        SELECT atttypid::regtype::text FROM pg_attribute
        WHERE attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
          AND attname = %s AND attnum > 0 AND NOT attisdropped
        """,
        (table.schema, table.name, rule.timestamp_column),
    )
    row = await cursor.fetchone()
    if row is None:
        raise MaintenanceError(
            "ColumnNotFound",
            f'table "{table}" has no column "{rule.timestamp_column}" '
            f"({field_name}.timestampColumn)",
        )
    if str(row[0]) not in TIMESTAMP_TYPES:
        raise MaintenanceError(
            "ColumnNotTimestamp",
            f'column "{table}"."{rule.timestamp_column}" is {row[0]}, not a timestamp '
            f"({field_name}.timestampColumn)",
        )
    statement = sql.SQL(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s FOR UPDATE SKIP LOCKED))"
    ).format(table=table.sql(), column=sql.Identifier(rule.timestamp_column))
    while True:
        async with connection.transaction():
            cursor = await connection.execute(statement, (cutoff, rule.batch_size))
            deleted = cursor.rowcount
        # A short batch is not the end: it may only have skipped rows a writer held.
        if deleted == 0:
            return
        progress.deleted += deleted
        progress.batches += 1


@dataclass(frozen=True)
class TableSize:
    name: str
    total_bytes: int
    total: str  # pg_size_pretty, PostgreSQL's own rendering


@dataclass(frozen=True)
class SizeReport:
    tables: list[TableSize] = field(default_factory=list)
    connections: ConnectionUsage | None = None


async def size_report(connection: psycopg.AsyncConnection, top: int) -> SizeReport:
    cursor = await connection.execute(SIZE_QUERY, (top,))
    tables = [TableSize(str(n), int(b), str(p)) for n, b, p in await cursor.fetchall()]
    cursor = await connection.execute(USAGE_QUERY)
    usage = await cursor.fetchone()
    assert usage is not None  # an aggregate always returns one row
    return SizeReport(tables, ConnectionUsage(in_use=int(usage[0]), max_connections=int(usage[1])))


def classify_error(error: Exception, timeouts: Timeouts, secrets: list[str]) -> tuple[str, str]:
    """(reason, message) for a task's failure, with no credentials in it."""
    if isinstance(error, MaintenanceError):
        return error.reason, error.message
    notes = " ".join(getattr(error, "__notes__", []))
    where = f" {notes}" if notes else ""
    if isinstance(error, psycopg.errors.QueryCanceled):
        return (
            "StatementTimeout",
            f"a statement ran longer than {timeouts.statement_seconds}s{where} "
            "(spec.statementTimeoutSeconds)",
        )
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return (
            "LockTimeout",
            f"a statement waited more than {timeouts.lock_seconds}s for a lock{where} "
            "(spec.lockTimeoutSeconds)",
        )
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, psycopg.OperationalError):
        return "DatabaseUnreachable", redact(f"PostgreSQL connection lost: {first_line}", secrets)
    return "DatabaseError", redact(f"{first_line}{where}", secrets)
