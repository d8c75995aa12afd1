"""The tenant's row in the application's "Tenant" table, and its rows elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import psycopg
from psycopg import sql

from orion_operator.tenancy.errors import SchemaMismatch

TENANT_COLUMN = "tenantId"


class TenantState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class TenantTable:
    """Where the application keeps its tenants; the names Orion's Prisma schema uses."""

    table: str = "Tenant"
    schema: str = "public"
    id_column: str = "id"
    name_column: str = "name"
    plan_column: str = "plan"
    status_column: str = "status"
    active_value: str = "active"
    suspended_value: str = "suspended"
    # Static values for columns the application requires; written on insert only.
    extra_columns: Mapping[str, str] = field(default_factory=dict)

    def status_value(self, state: TenantState) -> str:
        return self.suspended_value if state is TenantState.SUSPENDED else self.active_value


DEFAULT_TENANT_TABLE = TenantTable()


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    name: str
    plan: str
    state: TenantState


async def tenant_scoped_tables(conn: psycopg.AsyncConnection, schema: str = "public") -> list[str]:
    """Tables that carry a "tenantId" column, the runbook's tenant-scoped data."""
    cursor = await conn.execute(
        """
        SELECT c.table_name
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = %s AND c.column_name = %s AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name
        """,
        (schema, TENANT_COLUMN),
    )
    return [row[0] for row in await cursor.fetchall()]


def _qualified(table: TenantTable) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.table))


async def read_tenant(
    conn: psycopg.AsyncConnection, tenant_id: str, table: TenantTable = DEFAULT_TENANT_TABLE
) -> TenantRecord | None:
    query = sql.SQL("SELECT {id}, {name}, {plan}, {status} FROM {table} WHERE {id} = %s").format(
        id=sql.Identifier(table.id_column),
        name=sql.Identifier(table.name_column),
        plan=sql.Identifier(table.plan_column),
        status=sql.Identifier(table.status_column),
        table=_qualified(table),
    )
    try:
        cursor = await conn.execute(query, (tenant_id,))
    except psycopg.errors.UndefinedColumn as error:
        raise SchemaMismatch(f'table "{table.table}": {str(error).splitlines()[0]}') from None
    row = await cursor.fetchone()
    if row is None:
        return None
    state = TenantState.SUSPENDED if row[3] == table.suspended_value else TenantState.ACTIVE
    return TenantRecord(tenant_id=str(row[0]), name=str(row[1]), plan=str(row[2]), state=state)


async def ensure_tenant(
    conn: psycopg.AsyncConnection, desired: TenantRecord, table: TenantTable = DEFAULT_TENANT_TABLE
) -> bool:
    """Insert or update the tenant's row; True when the database changed.

    `table.extra_columns` are part of the insert only: the application may change them later.
    """
    extras = sorted(table.extra_columns.items())
    columns = [table.id_column, table.name_column, table.plan_column, table.status_column]
    columns += [name for name, _ in extras]
    values = [desired.tenant_id, desired.name, desired.plan, table.status_value(desired.state)]
    values += [value for _, value in extras]
    query = sql.SQL(
        """
        INSERT INTO {table} ({columns}) VALUES ({placeholders})
        ON CONFLICT ({id}) DO UPDATE
           SET {name} = EXCLUDED.{name}, {plan} = EXCLUDED.{plan}, {status} = EXCLUDED.{status}
         WHERE ({table_name}.{name}, {table_name}.{plan}, {table_name}.{status})
               IS DISTINCT FROM (EXCLUDED.{name}, EXCLUDED.{plan}, EXCLUDED.{status})
        """
    ).format(
        table=_qualified(table),
        table_name=sql.Identifier(table.table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        placeholders=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        id=sql.Identifier(table.id_column),
        name=sql.Identifier(table.name_column),
        plan=sql.Identifier(table.plan_column),
        status=sql.Identifier(table.status_column),
    )
    try:
        cursor = await conn.execute(query, values)
    except (
        psycopg.errors.UndefinedColumn,
        psycopg.errors.InvalidColumnReference,
        psycopg.errors.NotNullViolation,
    ) as error:
        hint = ""
        if isinstance(error, psycopg.errors.NotNullViolation):
            hint = "; give it a value in spec.tenantTable.extraColumns (or ORION_TENANT_TABLE)"
        raise SchemaMismatch(f'table "{table.table}": {str(error).splitlines()[0]}{hint}') from None
    return cursor.rowcount > 0


async def list_tenants(
    conn: psycopg.AsyncConnection, table: TenantTable = DEFAULT_TENANT_TABLE
) -> list[TenantRecord]:
    """Every tenant row, ordered by id."""
    query = sql.SQL("SELECT {id}, {name}, {plan}, {status} FROM {table} ORDER BY {id}").format(
        id=sql.Identifier(table.id_column),
        name=sql.Identifier(table.name_column),
        plan=sql.Identifier(table.plan_column),
        status=sql.Identifier(table.status_column),
        table=_qualified(table),
    )
    try:
        cursor = await conn.execute(query)
    except psycopg.errors.UndefinedColumn as error:
        raise SchemaMismatch(f'table "{table.table}": {str(error).splitlines()[0]}') from None
    return [
        TenantRecord(
            tenant_id=str(row[0]),
            name=str(row[1] if row[1] is not None else row[0]),
            plan=str(row[2]),
            state=TenantState.SUSPENDED if row[3] == table.suspended_value else TenantState.ACTIVE,
        )
        for row in await cursor.fetchall()
    ]


async def count_tenant_rows(
    conn: psycopg.AsyncConnection, tenant_id: str, tables: list[str], schema: str = "public"
) -> dict[str, int]:
    """Rows per tenant-scoped table, in one round trip."""
    if not tables:
        return {}
    parts = [
        sql.SQL("SELECT {label}, count(*) FROM {schema}.{table} WHERE {col} = %(tenant)s").format(
            label=sql.Literal(table),
            schema=sql.Identifier(schema),
            table=sql.Identifier(table),
            col=sql.Identifier(TENANT_COLUMN),
        )
        for table in tables
    ]
    cursor = await conn.execute(sql.SQL(" UNION ALL ").join(parts), {"tenant": tenant_id})
    return {name: int(count) for name, count in await cursor.fetchall()}


async def suspend_tenant(
    conn: psycopg.AsyncConnection, tenant_id: str, table: TenantTable = DEFAULT_TENANT_TABLE
) -> bool:
    """Mark an existing tenant row suspended (never inserts); True when a row changed."""
    query = sql.SQL("UPDATE {table} SET {status} = %s WHERE {id} = %s AND {status} <> %s").format(
        table=_qualified(table),
        status=sql.Identifier(table.status_column),
        id=sql.Identifier(table.id_column),
    )
    try:
        cursor = await conn.execute(
            query, (table.suspended_value, tenant_id, table.suspended_value)
        )
    except psycopg.errors.UndefinedColumn as error:
        raise SchemaMismatch(f'table "{table.table}": {str(error).splitlines()[0]}') from None
    return cursor.rowcount > 0
