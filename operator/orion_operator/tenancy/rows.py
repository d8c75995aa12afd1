"""The tenant's row in the application's "Tenant" table, and its rows elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
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
    state = TenantState.SUSPENDED if row[3] == TenantState.SUSPENDED else TenantState.ACTIVE
    return TenantRecord(tenant_id=row[0], name=row[1], plan=row[2], state=state)


async def ensure_tenant(
    conn: psycopg.AsyncConnection, desired: TenantRecord, table: TenantTable = DEFAULT_TENANT_TABLE
) -> bool:
    """Insert or update the tenant's row; True when the database changed."""
    query = sql.SQL(
        """
        INSERT INTO {table} ({id}, {name}, {plan}, {status}) VALUES (%s, %s, %s, %s)
        ON CONFLICT ({id}) DO UPDATE
           SET {name} = EXCLUDED.{name}, {plan} = EXCLUDED.{plan}, {status} = EXCLUDED.{status}
         WHERE ({table_name}.{name}, {table_name}.{plan}, {table_name}.{status})
               IS DISTINCT FROM (EXCLUDED.{name}, EXCLUDED.{plan}, EXCLUDED.{status})
        """
    ).format(
        table=_qualified(table),
        table_name=sql.Identifier(table.table),
        id=sql.Identifier(table.id_column),
        name=sql.Identifier(table.name_column),
        plan=sql.Identifier(table.plan_column),
        status=sql.Identifier(table.status_column),
    )
    try:
        cursor = await conn.execute(
            query, (desired.tenant_id, desired.name, desired.plan, desired.state.value)
        )
    except (psycopg.errors.UndefinedColumn, psycopg.errors.InvalidColumnReference) as error:
        raise SchemaMismatch(f'table "{table.table}": {str(error).splitlines()[0]}') from None
    return cursor.rowcount > 0


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
