"""The API's tenants-table mapping as the tenancy code takes it."""

from __future__ import annotations

from orion_operator.api.tenant import TenantTableMapping
from orion_operator.tenancy.rows import TenantTable


def table_of(mapping: TenantTableMapping) -> TenantTable:
    return TenantTable(
        table=mapping.table,
        schema=mapping.schema_name,
        id_column=mapping.id_column,
        name_column=mapping.name_column,
        plan_column=mapping.plan_column,
        status_column=mapping.status_column,
        active_value=mapping.active_value,
        suspended_value=mapping.suspended_value,
        extra_columns=dict(mapping.extra_columns),
    )
