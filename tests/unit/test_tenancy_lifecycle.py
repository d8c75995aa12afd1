"""Tenant lifecycle, provisioning modes and integrity against a real PostgreSQL (no Kubernetes)."""

from __future__ import annotations

import datetime
import secrets

import psycopg
import pytest

from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.alerts.state import CheckState
from orion_operator.settings import DEFAULT_INTEGRITY_ALLOW_LIST
from orion_operator.tenancy.database import connect
from orion_operator.tenancy.deletion import (
    TenantDeletionFailed,
    delete_tenant_data,
    deletion_order,
)
from orion_operator.tenancy.errors import SchemaMismatch
from orion_operator.tenancy.integrity import (
    AllowListInvalid,
    IntegrityAlertGate,
    IntegrityReport,
    database_of,
    integrity_alert_step,
    run_integrity_check,
)
from orion_operator.tenancy.rows import TenantRecord, TenantState, TenantTable
from orion_operator.tenancy.sync import sync_tenant
from tests.conftest import AppDatabase

TABLES = ("Tenant", "User", "Product", "Sale", "AuditLog")


def seed_two_tenants(db: AppDatabase) -> None:
    db.execute(
        """
        INSERT INTO "Tenant" (id, name, plan) VALUES
          ('acme', 'Acme', 'pro'), ('globex', 'G', 'free');
        INSERT INTO "User" (id, email, role, "tenantId") VALUES
          ('admin', 'root@x', 'platform_admin', NULL),
          ('u1', 'a@acme', 'owner', 'acme'), ('u2', 'b@acme', 'member', 'acme'),
          ('u3', 'c@globex', 'owner', 'globex');
        INSERT INTO "Product" (id, "tenantId", sku, name) VALUES
          ('p1', 'acme', 'A-1', 'Anvil'), ('p2', 'acme', 'A-2', 'Skates'),
          ('p3', 'globex', 'G-1', 'Gadget');
        INSERT INTO "Sale" (id, "tenantId", "productId", quantity) VALUES
          ('s1', 'acme', 'p1', 2), ('s2', 'globex', 'p3', 1);
        INSERT INTO "AuditLog" ("tenantId", action) VALUES
          ('acme', 'created'), ('acme', 'invited'), ('globex', 'created'), (NULL, 'boot');
        """
    )


def checksum(db: AppDatabase, table: str, where: str = "true") -> str:
    """md5 of the table's rows (those matching `where`), in a stable order."""
    rows = db.query(
        f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t "
        f"WHERE {where}"
    )
    return str(rows[0][0])


def everything(db: AppDatabase) -> dict[str, str]:
    return {table: checksum(db, table) for table in TABLES}


# --- deleting one tenant -------------------------------------------------------------------


async def test_deletion_order_puts_children_before_parents(app_database: AppDatabase) -> None:
    async with connect(app_database.url) as conn:
        order = await deletion_order(conn)
    assert set(order) == {"User", "Product", "Sale", "AuditLog"}
    assert order.index("Sale") < order.index("Product")


async def test_delete_removes_exactly_one_tenants_rows_in_one_transaction(
    app_database: AppDatabase,
) -> None:
    seed_two_tenants(app_database)
    others = {
        table: checksum(
            app_database,
            table,
            "t.id <> 'acme'" if table == "Tenant" else "t.\"tenantId\" IS DISTINCT FROM 'acme'",
        )
        for table in TABLES
    }

    deletion = await delete_tenant_data(app_database.url, "acme")

    assert deletion.tenant_row_deleted is True
    assert deletion.deleted_rows == {"Sale": 1, "AuditLog": 2, "Product": 2, "User": 2}
    emptied = list(deletion.deleted_rows)
    assert emptied.index("Sale") < emptied.index("Product")
    for table in ("User", "Product", "Sale", "AuditLog"):
        assert app_database.query(
            f'SELECT count(*) FROM "{table}" WHERE "tenantId" = %s', ("acme",)
        ) == [(0,)]
    assert app_database.query('SELECT id FROM "Tenant"') == [("globex",)]
    # Everybody else's rows, the platform admin and the NULL-tenant audit row included, are intact.
    assert everything(app_database) == others


async def test_a_failure_midway_leaves_every_row_in_place(app_database: AppDatabase) -> None:
    seed_two_tenants(app_database)
    # Another tenant's sale points at one of acme's products: that DELETE must fail.
    app_database.execute(
        """INSERT INTO "Sale" (id, "tenantId", "productId") VALUES ('s3', 'globex', 'p2')"""
    )
    before = everything(app_database)

    with pytest.raises(TenantDeletionFailed, match='tenant "acme": nothing was deleted') as caught:
        await delete_tenant_data(app_database.url, "acme")

    assert "Sale" in caught.value.message
    assert everything(app_database) == before


# --- provisioning modes ----------------------------------------------------------------------


@pytest.fixture
def read_only_url(app_database: AppDatabase) -> str:
    """A role that may only SELECT: any write through it fails in PostgreSQL itself."""
    role = f"reader_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    server = app_database.server
    server.psql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    server.psql(
        f'GRANT CONNECT ON DATABASE "{app_database.name}" TO "{role}";',
    )
    server.psql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"', app_database.name)
    return server.url_for(app_database.name, role, password)


async def test_observe_mode_never_writes_even_through_a_read_only_role(
    app_database: AppDatabase, read_only_url: str
) -> None:
    seed_two_tenants(app_database)
    before = everything(app_database)
    desired = TenantRecord("acme", "Renamed", "enterprise", TenantState.SUSPENDED)

    observed = await sync_tenant(read_only_url, desired, write=False)
    report = await run_integrity_check(read_only_url, DEFAULT_INTEGRITY_ALLOW_LIST)

    assert observed.record == TenantRecord("acme", "Acme", "pro", TenantState.ACTIVE)
    assert observed.row_counts == {"AuditLog": 2, "Product": 2, "Sale": 1, "User": 2}
    assert report.null_tenant_rows == {"AuditLog": 1}
    assert everything(app_database) == before
    # The role really cannot write: ensure mode through it is refused by PostgreSQL.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await sync_tenant(read_only_url, desired, write=True)
    assert everything(app_database) == before


async def test_ensure_with_a_custom_mapping_and_required_extra_columns(
    app_database: AppDatabase,
) -> None:
    app_database.execute(
        """CREATE TABLE "organizations" (
             slug text PRIMARY KEY, title text NOT NULL, tier text NOT NULL,
             state text NOT NULL, region text NOT NULL, "billingEmail" text NOT NULL)"""
    )
    mapping = TenantTable(
        table="organizations",
        id_column="slug",
        name_column="title",
        plan_column="tier",
        status_column="state",
        active_value="ACTIVE",
        suspended_value="SUSPENDED",
        extra_columns={"region": "eu", "billingEmail": "billing@acme.example"},
    )
    acme = TenantRecord("acme", "Acme", "pro", TenantState.ACTIVE)

    created = await sync_tenant(app_database.url, acme, write=True, table=mapping)
    suspended = await sync_tenant(
        app_database.url,
        TenantRecord("acme", "Acme", "pro", TenantState.SUSPENDED),
        write=True,
        table=mapping,
    )

    assert created.changed and suspended.changed
    assert suspended.record.state is TenantState.SUSPENDED
    assert app_database.query("SELECT * FROM organizations") == [
        ("acme", "Acme", "pro", "SUSPENDED", "eu", "billing@acme.example")
    ]
    # Without the required column's value the error says where to give it.
    missing = TenantTable(
        table="organizations",
        id_column="slug",
        name_column="title",
        plan_column="tier",
        status_column="state",
        extra_columns={"region": "eu"},
    )
    with pytest.raises(SchemaMismatch, match=r'"billingEmail".*extraColumns'):
        await sync_tenant(
            app_database.url,
            TenantRecord("globex", "G", "free", TenantState.ACTIVE),
            write=True,
            table=missing,
        )


# --- integrity -------------------------------------------------------------------------------


async def test_integrity_counts_null_tenants_and_orphans_with_and_without_the_allow_list(
    app_database: AppDatabase,
) -> None:
    seed_two_tenants(app_database)
    # An application table without a foreign key can hold orphans.
    app_database.execute(
        """CREATE TABLE "Note" (id serial PRIMARY KEY, "tenantId" text, body text);
           INSERT INTO "Note" ("tenantId", body) VALUES
             ('acme', 'ok'), ('ghost', 'orphan'), ('ghost', 'orphan 2'), (NULL, 'stray')"""
    )

    strict = await run_integrity_check(app_database.url, {})
    allowing = await run_integrity_check(
        app_database.url, {**DEFAULT_INTEGRITY_ALLOW_LIST, "AuditLog": "action = 'boot'"}
    )

    assert strict.null_tenant_rows == {"AuditLog": 1, "Note": 1, "User": 1}
    assert strict.orphan_rows == {"Note": 2}
    assert strict.violations == 5 and not strict.clean
    assert allowing.null_tenant_rows == {"Note": 1}
    assert allowing.allowed_null_tenant_rows == {"AuditLog": 1, "User": 1}
    assert allowing.orphan_rows == {"Note": 2}
    assert 'Note: 2 row(s) whose "tenantId" names no tenant' in allowing.summary()

    app_database.execute("""DELETE FROM "Note" WHERE "tenantId" IS NULL OR "tenantId" = 'ghost'""")
    clean = await run_integrity_check(
        app_database.url, {**DEFAULT_INTEGRITY_ALLOW_LIST, "AuditLog": "action = 'boot'"}
    )
    assert (
        clean.clean and clean.summary() == "no rows without a tenant (2 allowed by the allow-list)"
    )


async def test_a_bad_allow_list_condition_names_its_table(app_database: AppDatabase) -> None:
    with pytest.raises(AllowListInvalid, match='table "User"'):
        await run_integrity_check(app_database.url, {"User": "rolee = 'x'"})
    with pytest.raises(AllowListInvalid, match=r'table "User".*not valid SQL'):
        await run_integrity_check(app_database.url, {"User": "role = = 'x'"})


async def test_integrity_alerts_once_per_violation_and_once_on_recovery(
    app_database: AppDatabase,
) -> None:
    seed_two_tenants(app_database)
    subject = ObjectRef("Tenant", "ns", "acme")
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    state = CheckState()
    sent = []
    for minute, statement in enumerate(
        [None, None, """DELETE FROM "AuditLog" WHERE "tenantId" IS NULL""", None]
    ):
        if statement:
            app_database.execute(statement)
        report = await run_integrity_check(app_database.url, DEFAULT_INTEGRITY_ALLOW_LIST)
        state, alert = integrity_alert_step(
            state,
            report,
            subject=subject,
            subject_uid="uid",
            now=now + datetime.timedelta(minutes=minute),
        )
        sent.append(alert and (alert.transition, alert.severity, alert.reason))
    assert sent == [
        (Transition.FIRING, Severity.WARNING, "IntegrityViolation"),
        None,
        (Transition.RESOLVED, Severity.INFO, "IntegrityRestored"),
        None,
    ]


async def test_tenants_sharing_a_database_send_one_alert_per_transition(
    app_database: AppDatabase,
) -> None:
    seed_two_tenants(app_database)  # with a NULL-tenant AuditLog row: a violation
    gate = IntegrityAlertGate()
    database = database_of(app_database.url)
    states = {name: CheckState() for name in ("acme", "globex")}
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

    async def both_check(at: datetime.timedelta) -> list[str]:
        """Each Tenant's check and alert step, as its reconcile does; what reaches the channels."""
        report = await run_integrity_check(app_database.url, DEFAULT_INTEGRITY_ALLOW_LIST)
        sent = []
        for name, prior in states.items():
            states[name], alert = integrity_alert_step(
                prior,
                report,
                subject=ObjectRef("Tenant", "ns", name),
                subject_uid=name,
                now=start + at + datetime.timedelta(seconds=len(sent)),
                database=database,
            )
            if alert is not None and gate.admits(database, alert):
                assert alert.details["database"] == database
                sent.append(f"{alert.reason} by {name}")
        return sent

    assert await both_check(datetime.timedelta(0)) == ["IntegrityViolation by acme"]
    assert all(state.firing for state in states.values())  # each Tenant's status says so
    assert await both_check(datetime.timedelta(minutes=1)) == []
    # The reminder after 4 hours: both Tenants repeat it, the channels hear it once.
    reminders = await both_check(datetime.timedelta(hours=4, minutes=1))
    assert reminders == ["IntegrityViolation by acme"]
    app_database.execute("""DELETE FROM "AuditLog" WHERE "tenantId" IS NULL""")
    assert await both_check(datetime.timedelta(hours=5)) == ["IntegrityRestored by acme"]


def test_the_alert_gate_keeps_databases_apart() -> None:
    gate = IntegrityAlertGate()
    violation = IntegrityReport(null_tenant_rows={"Product": 1})
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

    def alert_of(name: str) -> Alert:
        _, alert = integrity_alert_step(
            CheckState(),
            violation,
            subject=ObjectRef("Tenant", "ns", name),
            subject_uid=name,
            now=now,
        )
        assert alert is not None
        return alert

    assert gate.admits("orion on db-a:5432", alert_of("acme"))
    assert not gate.admits("orion on db-a:5432", alert_of("globex"))
    assert gate.admits("orion on db-b:5432", alert_of("initech"))
