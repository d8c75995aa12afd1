"""One tenant brought in line with its spec, and reported on."""

from __future__ import annotations

from dataclasses import dataclass

from orion_operator.tenancy.database import ConnectionPool, connect, session
from orion_operator.tenancy.errors import TenantRowMissing
from orion_operator.tenancy.rows import (
    DEFAULT_TENANT_TABLE,
    TenantRecord,
    TenantTable,
    count_tenant_rows,
    ensure_tenant,
    read_tenant,
    suspend_tenant,
    tenant_scoped_tables,
)


@dataclass(frozen=True)
class TenantSyncResult:
    record: TenantRecord
    changed: bool
    row_counts: dict[str, int]


async def sync_tenant(
    url: str,
    desired: TenantRecord,
    *,
    write: bool,
    table: TenantTable = DEFAULT_TENANT_TABLE,
    connect_timeout_seconds: int = 5,
    pool: ConnectionPool | None = None,
) -> TenantSyncResult:
    """Ensure (when `write`) or only read the tenant's row, then count its data."""
    async with session(url, pool=pool, connect_timeout_seconds=connect_timeout_seconds) as conn:
        changed = False
        if write:
            changed = await ensure_tenant(conn, desired, table)
        record = await read_tenant(conn, desired.tenant_id, table)
        if record is None:
            raise TenantRowMissing(
                f'no row with {table.id_column} = "{desired.tenant_id}" in table "{table.table}" '
                "(provisioning is observe: the application must create it)"
            )
        tables = await tenant_scoped_tables(conn, table.schema)
        counts = await count_tenant_rows(conn, desired.tenant_id, tables, table.schema)
    return TenantSyncResult(record=record, changed=changed, row_counts=counts)


async def suspend_tenant_row(
    url: str,
    tenant_id: str,
    *,
    table: TenantTable = DEFAULT_TENANT_TABLE,
    connect_timeout_seconds: int = 5,
) -> bool:
    async with connect(url, connect_timeout_seconds=connect_timeout_seconds) as conn:
        return await suspend_tenant(conn, tenant_id, table)
