"""Tenancy code against a real PostgreSQL holding the Orion-like schema (no Kubernetes)."""

from __future__ import annotations

import pytest

from orion_operator.tenancy.errors import DatabaseUnavailable, SchemaMismatch, TenantRowMissing
from orion_operator.tenancy.rows import TenantRecord, TenantState, TenantTable
from orion_operator.tenancy.sync import sync_tenant
from tests.conftest import AppDatabase

ACME = TenantRecord(tenant_id="acme", name="Acme", plan="pro", state=TenantState.ACTIVE)


async def test_ensure_writes_the_row_once_and_counts_tenant_data(app_database: AppDatabase) -> None:
    first = await sync_tenant(app_database.url, ACME, write=True)
    app_database.execute(
        """INSERT INTO "User" (id, email, "tenantId") VALUES
           ('u1', 'a@x', 'acme'), ('u2', 'b@x', 'acme'), ('admin', 'root@x', NULL)"""
    )
    second = await sync_tenant(app_database.url, ACME, write=True)

    assert first.changed is True
    assert second.changed is False
    assert second.row_counts == {"AuditLog": 0, "Product": 0, "Sale": 0, "User": 2}
    assert app_database.query('SELECT id, name, plan, status FROM "Tenant"') == [
        ("acme", "Acme", "pro", "active")
    ]


async def test_plan_change_and_suspension_update_the_row(app_database: AppDatabase) -> None:
    await sync_tenant(app_database.url, ACME, write=True)
    changed = TenantRecord("acme", "Acme Inc", "enterprise", TenantState.SUSPENDED)
    result = await sync_tenant(app_database.url, changed, write=True)
    assert result.changed is True
    assert result.record == changed
    assert app_database.query('SELECT name, plan, status FROM "Tenant"') == [
        ("Acme Inc", "enterprise", "suspended")
    ]


async def test_observe_mode_never_writes(app_database: AppDatabase) -> None:
    with pytest.raises(TenantRowMissing, match='no row with id = "acme"'):
        await sync_tenant(app_database.url, ACME, write=False)
    assert app_database.query('SELECT count(*) FROM "Tenant"') == [(0,)]

    app_database.execute(
        """INSERT INTO "Tenant" (id, name, plan) VALUES ('acme', 'App-made', 'free')"""
    )
    result = await sync_tenant(app_database.url, ACME, write=False)
    assert result.record.name == "App-made"
    assert app_database.query('SELECT name, plan FROM "Tenant"') == [("App-made", "free")]


async def test_unreachable_database_is_reported_without_the_password(
    app_database: AppDatabase,
) -> None:
    wrong_port = app_database.url.replace(str(app_database.server.port), "1")
    with pytest.raises(DatabaseUnavailable) as caught:
        await sync_tenant(wrong_port, ACME, write=True, connect_timeout_seconds=2)
    assert "cannot connect to PostgreSQL" in caught.value.message
    assert app_database.password not in caught.value.message

    wrong_password = app_database.url.replace(app_database.password, "not-the-password")
    with pytest.raises(DatabaseUnavailable) as caught:
        await sync_tenant(wrong_password, ACME, write=True)
    assert "password authentication failed" in caught.value.message
    assert "not-the-password" not in caught.value.message


async def test_missing_tenant_table_is_a_schema_mismatch(app_database: AppDatabase) -> None:
    with pytest.raises(SchemaMismatch, match="Organisation"):
        await sync_tenant(
            app_database.url, ACME, write=True, table=TenantTable(table="Organisation")
        )
