"""Deleting one tenant's data: every tenant-scoped table, then its tenant row, in one transaction.

Tables are emptied of the tenant's rows children first (the order comes from the foreign keys in
pg_constraint), so a RESTRICT key between two tenant-scoped tables never fires. Anything else
that still points at those rows (another tenant's row, a table without "tenantId") makes
PostgreSQL refuse a DELETE: the whole transaction rolls back and nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from orion_operator.restore.errors import RestoreError
from orion_operator.restore.tenant import foreign_keys, load_order
from orion_operator.tenancy.database import connect
from orion_operator.tenancy.errors import TenancyError
from orion_operator.tenancy.rows import (
    DEFAULT_TENANT_TABLE,
    TENANT_COLUMN,
    TenantTable,
    tenant_scoped_tables,
)


class TenantDeletionFailed(TenancyError):
    reason = "TenantDeletionFailed"


@dataclass(frozen=True)
class TenantDeletion:
    tenant_id: str
    deleted_rows: dict[str, int]  # per tenant-scoped table, in the order they were emptied
    tenant_row_deleted: bool


async def deletion_order(
    conn: psycopg.AsyncConnection, table: TenantTable = DEFAULT_TENANT_TABLE
) -> list[str]:
    """Tenant-scoped tables, every referencing table before the tables it references."""
    tables = [t for t in await tenant_scoped_tables(conn, table.schema) if t != table.table]
    keys = await foreign_keys(conn, table.schema)
    try:
        return list(reversed(load_order(tables, keys)))
    except RestoreError as error:
        raise TenantDeletionFailed(error.message) from None


async def delete_tenant_rows(
    conn: psycopg.AsyncConnection, tenant_id: str, table: TenantTable = DEFAULT_TENANT_TABLE
) -> TenantDeletion:
    """Inside one transaction on `conn`; the caller commits or rolls back."""
    deleted: dict[str, int] = {}
    for name in await deletion_order(conn, table):
        cursor = await conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE {} = %s").format(
                sql.Identifier(table.schema), sql.Identifier(name), sql.Identifier(TENANT_COLUMN)
            ),
            (tenant_id,),
        )
        deleted[name] = cursor.rowcount
    cursor = await conn.execute(
        sql.SQL("DELETE FROM {}.{} WHERE {} = %s").format(
            sql.Identifier(table.schema),
            sql.Identifier(table.table),
            sql.Identifier(table.id_column),
        ),
        (tenant_id,),
    )
    return TenantDeletion(tenant_id, deleted, cursor.rowcount > 0)


async def delete_tenant_data(
    url: str,
    tenant_id: str,
    *,
    table: TenantTable = DEFAULT_TENANT_TABLE,
    connect_timeout_seconds: int = 5,
) -> TenantDeletion:
    """Delete the tenant's rows everywhere and its tenant row, all or nothing."""
    async with connect(url, connect_timeout_seconds=connect_timeout_seconds) as conn:
        try:
            async with conn.transaction():
                return await delete_tenant_rows(conn, tenant_id, table)
        except psycopg.errors.IntegrityError as error:
            detail = (error.diag.message_detail or "").strip()
            raise TenantDeletionFailed(
                f'tenant "{tenant_id}": nothing was deleted: {str(error).splitlines()[0]}'
                + (f" ({detail})" if detail else "")
                + "; remove or re-point what still references the tenant's rows"
            ) from None
