"""Tenant restores: one tenant's rows replaced from its backup ZIP, in one transaction.

The ZIP (see `backup.dump.dump_tenant`) holds `<tenant table>.csv` with the tenant's own row and
one CSV with a header per tenant-scoped table. In one transaction: the tenant's row is upserted,
its rows are deleted from every tenant-scoped table (children first, the order computed from
pg_constraint), each CSV is loaded with `COPY ... FROM STDIN` using its header as the column list
(parents first), and the row counts are checked against the manifest. Any error rolls the whole
transaction back, so the tenant's data stays exactly as it was. Rows of other tenants are never
written: if any of them references a row of this tenant, the restore stops before changing
anything.
"""

from __future__ import annotations

import asyncio
import csv
import graphlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from orion_operator.restore.artifact import Progress, no_progress
from orion_operator.restore.database import connect, first_line, scrub
from orion_operator.restore.errors import RestoreError
from orion_operator.tenancy.rows import (
    DEFAULT_TENANT_TABLE,
    TENANT_COLUMN,
    TenantTable,
    count_tenant_rows,
    tenant_scoped_tables,
)

COPY_CHUNK_BYTES = 1 << 20
STAGE = "restoring tenant rows"
_COPY_CONTEXT = re.compile(r"^(COPY \S+, line \d+)")


@dataclass(frozen=True)
class Column:
    name: str
    not_null: bool
    has_default: bool  # a DEFAULT or an identity: COPY fills it when the column is left out
    generated: bool  # GENERATED ALWAYS AS (...) STORED: COPY cannot write it


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child: str
    parent: str
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]
    deferrable: bool


class _Failed(Exception):
    """Inside the transaction: stop, roll back, and report `RestoreError`."""

    def __init__(self, error: RestoreError) -> None:
        self.error = error


# ---------------------------------------------------------------------------------------------
# Reading the schema


async def table_columns(
    conn: psycopg.AsyncConnection, schema: str, table: str
) -> dict[str, Column]:
    cursor = await conn.execute(
        """
        SELECT a.attname, a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''
        FROM pg_attribute a
        WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (schema, table),
    )
    return {
        str(name): Column(str(name), bool(not_null), bool(default), bool(generated))
        for name, not_null, default, generated in await cursor.fetchall()
    }


async def foreign_keys(conn: psycopg.AsyncConnection, schema: str) -> list[ForeignKey]:
    """Every foreign key between two tables of `schema`, with its columns in order."""
    cursor = await conn.execute(
        """
        SELECT con.conname, child.relname, parent.relname, con.condeferrable,
          ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                ORDER BY k.ord),
          ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                ORDER BY k.ord)
        FROM pg_constraint con
        JOIN pg_class child ON child.oid = con.conrelid
        JOIN pg_namespace cn ON cn.oid = child.relnamespace
        JOIN pg_class parent ON parent.oid = con.confrelid
        JOIN pg_namespace pn ON pn.oid = parent.relnamespace
        WHERE con.contype = 'f' AND cn.nspname = %s AND pn.nspname = %s
        ORDER BY con.conname
        """,
        (schema, schema),
    )
    return [
        ForeignKey(
            str(name), str(child), str(parent), tuple(child_cols), tuple(parent_cols), deferrable
        )
        for name, child, parent, deferrable, child_cols, parent_cols in await cursor.fetchall()
    ]


def load_order(tables: list[str], keys: list[ForeignKey]) -> list[str]:
    """`tables` with every referenced table before the tables that reference it.

    Deletes run in the reverse order. Deferrable keys are left out (they are deferred to the
    commit); a table referencing itself needs no order (COPY and DELETE check at the statement's
    end). A cycle of non-deferrable keys cannot be ordered and is refused.
    """
    names = set(tables)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for table in sorted(tables):
        sorter.add(table)
    for key in keys:
        inside = key.child in names and key.parent in names and key.child != key.parent
        if inside and not key.deferrable:
            sorter.add(key.child, key.parent)
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as error:
        cycle = " → ".join(f'"{table}"' for table in error.args[1])
        raise RestoreError(
            "SchemaUnsupported",
            f"tables {cycle} reference each other through foreign keys that are not DEFERRABLE: "
            "their rows cannot be replaced in any order; make one of those keys DEFERRABLE",
        ) from None


# ---------------------------------------------------------------------------------------------
# Columns: the CSV header against the table as it is now


def copy_columns(
    table: str, header: list[str], columns: dict[str, Column], allow_added_nullable: bool
) -> list[str]:
    """The COPY column list for `header`, or RestoreError("SchemaMismatch") naming the columns."""
    quoted = ", ".join
    gone = [name for name in header if name not in columns]
    if gone:
        raise RestoreError(
            "SchemaMismatch",
            f'table "{table}": the backup has column(s) {quoted(map(repr, gone))} that the table '
            "no longer has; the schema changed since the backup, restore it with a matching "
            "schema (or a platform restore)",
        )
    generated = [name for name in header if columns[name].generated]
    if generated:
        raise RestoreError(
            "SchemaMismatch",
            f'table "{table}": column(s) {quoted(map(repr, generated))} are generated now and '
            "cannot be written by a restore",
        )
    added = [c.name for c in columns.values() if c.name not in header and not c.generated]
    if added and not allow_added_nullable:
        raise RestoreError(
            "SchemaMismatch",
            f'table "{table}": column(s) {quoted(map(repr, added))} are not in the backup (added '
            "since it was taken); set allowAddedNullableColumns: true "
            "(--allow-added-nullable-columns) to fill them with NULL or their defaults",
        )
    required = [name for name in added if columns[name].not_null and not columns[name].has_default]
    if required:
        raise RestoreError(
            "SchemaMismatch",
            f'table "{table}": column(s) {quoted(map(repr, required))} are not in the backup and '
            "are NOT NULL without a default, so no restore can fill them",
        )
    return header


# ---------------------------------------------------------------------------------------------
# The ZIP


@dataclass(frozen=True)
class _Entry:
    table: str
    name: str
    header: list[str]
    size_bytes: int


def _read_entries(archive: zipfile.ZipFile, tenant_table: str) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for info in archive.infolist():
        if info.is_dir() or not info.filename.endswith(".csv") or "/" in info.filename:
            raise RestoreError(
                "ArtifactInvalid",
                f'unexpected entry "{info.filename}" in the tenant ZIP: it holds only '
                "<table>.csv files",
            )
        with archive.open(info) as entry:
            line = entry.readline().decode("utf-8")
        header = next(csv.reader([line]), [])
        if not header:
            raise RestoreError(
                "ArtifactInvalid", f'"{info.filename}" in the tenant ZIP has no header line'
            )
        table = info.filename.removesuffix(".csv")
        entries[table] = _Entry(table, info.filename, header, info.file_size)
    if tenant_table not in entries:
        raise RestoreError(
            "ArtifactInvalid", f'the tenant ZIP has no "{tenant_table}.csv" with the tenant\'s row'
        )
    return entries


def _open_body(archive: zipfile.ZipFile, entry: _Entry) -> IO[bytes]:
    """The entry's bytes after the header line."""
    stream = archive.open(entry.name)
    stream.readline()
    return stream


class _ProgressCounter:
    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def add(self, count: int) -> None:
        self.done += count
        self.progress(STAGE, self.done, self.total)


async def _copy_entry(
    conn: psycopg.AsyncConnection,
    archive: zipfile.ZipFile,
    entry: _Entry,
    target: sql.Composable,
    columns: list[str],
    counter: _ProgressCounter,
) -> int:
    """COPY the entry's CSV rows into `target`; returns the number of rows."""
    query = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    body = await asyncio.to_thread(_open_body, archive, entry)
    try:
        async with conn.cursor() as cursor:
            async with cursor.copy(query) as copy:
                while chunk := await asyncio.to_thread(body.read, COPY_CHUNK_BYTES):
                    await copy.write(chunk)
                    counter.add(len(chunk))
            return cursor.rowcount
    finally:
        await asyncio.to_thread(body.close)


# ---------------------------------------------------------------------------------------------
# The restore


def _table(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


async def tenant_row_counts(
    database_url: str, tenant_id: str, schema: str = "public"
) -> dict[str, int]:
    """The tenant's rows per tenant-scoped table now (read only)."""
    conn = await connect(database_url, autocommit=True)
    async with conn:
        try:
            tables = [
                t
                for t in await tenant_scoped_tables(conn, schema)
                if t != DEFAULT_TENANT_TABLE.table
            ]
            return await count_tenant_rows(conn, tenant_id, tables, schema)
        except psycopg.Error as error:
            raise RestoreError(
                "DatabaseError",
                f'cannot count tenant "{tenant_id}"\'s rows: '
                f"{scrub(first_line(error), database_url)}",
            ) from None


def _refuse_existing_rows(tenant_id: str, counts: dict[str, int]) -> None:
    existing = {table: count for table, count in counts.items() if count}
    if existing:
        shown = ", ".join(f"{table} {count}" for table, count in sorted(existing.items()))
        raise RestoreError(
            "TenantNotEmpty",
            f'tenant "{tenant_id}" still has rows ({shown}); a tenant restore replaces them, so '
            "it needs overwrite: true (--overwrite); nothing was changed",
        )


async def preflight_tenant(database_url: str, tenant_id: str, *, overwrite: bool) -> None:
    """Before downloading anything: the target answers, and holds no rows to lose unasked."""
    counts = await tenant_row_counts(database_url, tenant_id)
    if not overwrite:
        _refuse_existing_rows(tenant_id, counts)


async def _refuse_references_from_other_tenants(
    conn: psycopg.AsyncConnection,
    schema: str,
    tenant_id: str,
    scoped: set[str],
    keys: list[ForeignKey],
) -> None:
    """Deleting this tenant's rows must not touch (cascade into, or break) anyone else's."""
    column = sql.Identifier(TENANT_COLUMN)
    for key in keys:
        if key.parent not in scoped or key.child not in scoped:
            continue
        joined = sql.SQL(" AND ").join(
            sql.SQL("c.{} = p.{}").format(sql.Identifier(c), sql.Identifier(p))
            for c, p in zip(key.child_columns, key.parent_columns, strict=True)
        )
        query = sql.SQL(
            "SELECT 1 FROM {child} AS c JOIN {parent} AS p ON {joined} "
            "WHERE p.{column} = %s AND c.{column} IS DISTINCT FROM %s LIMIT 1"
        ).format(
            child=_table(schema, key.child),
            parent=_table(schema, key.parent),
            joined=joined,
            column=column,
        )
        cursor = await conn.execute(query, (tenant_id, tenant_id))
        if await cursor.fetchone() is not None:
            raise _Failed(
                RestoreError(
                    "OtherTenantsReference",
                    f'rows of table "{key.child}" that are not tenant "{tenant_id}"\'s reference '
                    f'its rows in "{key.parent}" (foreign key "{key.name}"); replacing them would '
                    "change or break other tenants' data, so nothing was changed",
                )
            )


async def _restore_tenant_row(
    conn: psycopg.AsyncConnection,
    archive: zipfile.ZipFile,
    entry: _Entry,
    table: TenantTable,
    tenant_id: str,
    columns: list[str],
    counter: _ProgressCounter,
) -> None:
    """Insert or update the tenant's own row (other tables reference it, so it is never deleted)."""
    staging = sql.Identifier("orion_restore_tenant_row")
    await conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA").format(
            staging, _table(table.schema, table.table)
        )
    )
    rows = await _copy_entry(conn, archive, entry, staging, columns, counter)
    id_column = sql.Identifier(table.id_column)
    cursor = await conn.execute(sql.SQL("SELECT {} FROM {}").format(id_column, staging))
    ids = [row[0] for row in await cursor.fetchall()]
    if rows != 1 or ids != [tenant_id]:
        raise _Failed(
            RestoreError(
                "ArtifactInvalid",
                f'"{entry.name}" should hold exactly tenant "{tenant_id}"\'s row, '
                f"it holds {rows} row(s)",
            )
        )
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = [name for name in columns if name != table.id_column]
    action = (
        sql.SQL("DO UPDATE SET ")
        + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in updates
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    await conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            _table(table.schema, table.table), names, names, staging, id_column, action
        )
    )


async def restore_tenant(
    database_url: str,
    zip_path: Path,
    tenant_id: str,
    expected_row_counts: dict[str, int],
    *,
    overwrite: bool,
    allow_added_nullable_columns: bool = False,
    table: TenantTable = DEFAULT_TENANT_TABLE,
    progress: Progress = no_progress,
) -> dict[str, int]:
    """Replace tenant `tenant_id`'s rows with the ZIP's, atomically; rows restored per table."""
    schema = table.schema
    archive = await asyncio.to_thread(zipfile.ZipFile, zip_path)
    try:
        try:
            entries = await asyncio.to_thread(_read_entries, archive, table.table)
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as error:
            raise RestoreError(
                "ArtifactInvalid", f"the tenant ZIP is not readable: {error}"
            ) from None
        counter = _ProgressCounter(progress, sum(e.size_bytes for e in entries.values()))
        conn = await connect(database_url)
        async with conn:
            current = table.table
            try:
                async with conn.transaction():
                    await conn.execute("SET CONSTRAINTS ALL DEFERRED")
                    scoped = [
                        t for t in await tenant_scoped_tables(conn, schema) if t != table.table
                    ]
                    gone = sorted(set(entries) - set(scoped) - {table.table})
                    if gone:
                        raise _Failed(
                            RestoreError(
                                "SchemaMismatch",
                                f"the backup has table(s) {', '.join(map(repr, gone))}, which are "
                                f'no longer tenant-scoped tables (with a "{TENANT_COLUMN}" column) '
                                f'in schema "{schema}"',
                            )
                        )
                    keys = await foreign_keys(conn, schema)
                    order = load_order(scoped, keys)
                    if not overwrite:
                        _refuse_existing_rows(
                            tenant_id, await count_tenant_rows(conn, tenant_id, scoped, schema)
                        )
                    await _refuse_references_from_other_tenants(
                        conn, schema, tenant_id, set(scoped), keys
                    )
                    # Every header is checked before the first write.
                    plans = {
                        name: copy_columns(
                            name,
                            entry.header,
                            await table_columns(conn, schema, name),
                            allow_added_nullable_columns,
                        )
                        for name, entry in entries.items()
                    }
                    await _restore_tenant_row(
                        conn,
                        archive,
                        entries[table.table],
                        table,
                        tenant_id,
                        plans[table.table],
                        counter,
                    )
                    for current in reversed(order):
                        await conn.execute(
                            sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                                _table(schema, current), sql.Identifier(TENANT_COLUMN)
                            ),
                            (tenant_id,),
                        )
                    restored: dict[str, int] = {}
                    for current in order:
                        entry = entries.get(current)
                        if entry is None:
                            restored[current] = 0  # a table made after the backup: no rows then
                            continue
                        rows = await _copy_entry(
                            conn, archive, entry, _table(schema, current), plans[current], counter
                        )
                        expected = expected_row_counts.get(current)
                        if expected is not None and rows != expected:
                            raise _Failed(
                                RestoreError(
                                    "RowCountMismatch",
                                    f'table "{current}": the backup\'s CSV loaded {rows} rows, its '
                                    f"manifest says {expected}; rolled back, tenant "
                                    f'"{tenant_id}"\'s data is unchanged',
                                )
                            )
                        foreign = await _count_foreign_rows(conn, schema, current, tenant_id, rows)
                        if foreign:
                            raise _Failed(
                                RestoreError(
                                    "ArtifactInvalid",
                                    f'"{entry.name}" holds {foreign} row(s) that are not tenant '
                                    f'"{tenant_id}"\'s; rolled back, nothing was changed',
                                )
                            )
                        restored[current] = rows
            except _Failed as failed:
                raise failed.error from None
            except psycopg.Error as error:
                raise RestoreError(
                    "TenantRestoreFailed",
                    f'tenant "{tenant_id}", table "{current}": {_describe(error, database_url)}; '
                    f'rolled back, tenant "{tenant_id}"\'s data is unchanged',
                ) from None
    finally:
        await asyncio.to_thread(archive.close)
    return restored


async def _count_foreign_rows(
    conn: psycopg.AsyncConnection, schema: str, table: str, tenant_id: str, loaded: int
) -> int:
    """How many of the rows this transaction just loaded into `table` are not the tenant's.

    The sha256 ties the ZIP to its manifest, but not to its tenant: this keeps an edited or
    mislabelled ZIP from writing other tenants' rows. Counted through the tenant's rows only.
    """
    cursor = await conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE {} = %s AND xmin = pg_current_xact_id()::text::xid"
        ).format(_table(schema, table), sql.Identifier(TENANT_COLUMN)),
        (tenant_id,),
    )
    row = await cursor.fetchone()
    return loaded - int(row[0] if row else 0)


def _describe(error: psycopg.Error, database_url: str) -> str:
    """The error's first line and where in the CSV, without the row's values."""
    text = first_line_without_detail(error)
    context = (error.diag.context or "").splitlines()
    where = next((m.group(1) for line in context if (m := _COPY_CONTEXT.match(line))), None)
    return scrub(f"{text} ({where})" if where else text, database_url)


def first_line_without_detail(error: BaseException) -> str:
    # DETAIL lines quote the row's values (tenant data): status and Events get the message only.
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
