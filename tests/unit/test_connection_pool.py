"""The connection pool Tenant reconciles share, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from orion_operator.tenancy.database import ConnectionPool
from orion_operator.tenancy.errors import DatabaseUnavailable
from orion_operator.tenancy.integrity import run_integrity_check
from orion_operator.tenancy.rows import TenantRecord, TenantState
from orion_operator.tenancy.sync import sync_tenant
from tests.conftest import AppDatabase

ACME = TenantRecord(tenant_id="acme", name="Acme", plan="pro", state=TenantState.ACTIVE)


@contextmanager
def client_sessions(app_database: AppDatabase) -> Iterator[Callable[[], int]]:
    """Counts the database's client connections but the counter's own, from one connection:
    a fresh one per count would leave the previous one's server process briefly in it."""
    with psycopg.connect(app_database.url, autocommit=True) as counter:

        def count() -> int:
            row = counter.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
            assert row is not None
            return int(row[0])

        yield count


async def backend_pid(pool: ConnectionPool, url: str) -> int:
    async with pool.connection(url) as conn:
        cursor = await conn.execute("SELECT pg_backend_pid()")
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_reconciles_reuse_one_connection_instead_of_opening_one_each(
    app_database: AppDatabase,
) -> None:
    pool = ConnectionPool()
    with client_sessions(app_database) as sessions:
        try:
            first = await backend_pid(pool, app_database.url)
            await sync_tenant(app_database.url, ACME, write=True, pool=pool)
            await run_integrity_check(app_database.url, pool=pool)
            await sync_tenant(app_database.url, ACME, write=False, pool=pool)
            assert await backend_pid(pool, app_database.url) == first
            assert sessions() == 1
        finally:
            await pool.close()
        # The server process ends a moment after the client closes.
        for _ in range(50):
            if sessions() == 0:
                break
            await asyncio.sleep(0.1)
        assert sessions() == 0


async def test_integrity_check_gives_the_connection_back_writable_in_autocommit(
    app_database: AppDatabase,
) -> None:
    pool = ConnectionPool()
    try:
        await run_integrity_check(app_database.url, pool=pool)
        # A read-only or open transaction left behind would make this write fail or vanish.
        result = await sync_tenant(app_database.url, ACME, write=True, pool=pool)
    finally:
        await pool.close()
    assert result.changed is True
    assert app_database.query('SELECT id FROM "Tenant"') == [("acme",)]


async def test_concurrent_reconciles_open_at_most_the_pool_size(
    app_database: AppDatabase,
) -> None:
    pool = ConnectionPool(max_per_database=3)
    seen: list[int] = []

    async def hold() -> None:
        async with pool.connection(app_database.url) as conn:
            await conn.execute("SELECT pg_sleep(0.2)")

    with client_sessions(app_database) as sessions:
        holders = asyncio.gather(*(hold() for _ in range(12)))
        try:
            while not holders.done():
                seen.append(await asyncio.to_thread(sessions))
            await holders
        finally:
            await pool.close()
    assert max(seen) == 3


async def test_a_connection_broken_by_an_error_is_not_handed_out_again(
    app_database: AppDatabase,
) -> None:
    pool = ConnectionPool()
    try:
        first = await backend_pid(pool, app_database.url)
        app_database.execute("SELECT pg_terminate_backend(%s)", (first,))
        with pytest.raises(DatabaseUnavailable):
            await backend_pid(pool, app_database.url)
        assert await backend_pid(pool, app_database.url) != first
    finally:
        await pool.close()


async def test_an_unreachable_database_reads_as_without_the_pool_and_hides_the_password() -> None:
    pool = ConnectionPool()
    url = "postgresql://orion:Sup3r-Secret@127.0.0.1:1/orion"
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await sync_tenant(url, ACME, write=False, pool=pool, connect_timeout_seconds=2)
    finally:
        await pool.close()
    assert "cannot connect to PostgreSQL" in raised.value.message
    assert "Sup3r-Secret" not in raised.value.message


async def test_connections_of_a_url_no_longer_used_are_closed_once_idle_too_long(
    app_database: AppDatabase,
) -> None:
    """A rotated password changes the URL: the old URL's connections must not stay open."""
    pool = ConnectionPool(max_idle_seconds=0.5)
    before, after = (
        f"{app_database.url}?application_name={name}" for name in ("before-rotation", "after")
    )

    def sessions_of(application: str) -> int:
        row = app_database.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        )[0]
        return int(row[0])

    try:
        kept = await backend_pid(pool, after)
        await backend_pid(pool, before)
        assert sessions_of("before-rotation") == 1
        await asyncio.sleep(0.6)
        assert await backend_pid(pool, after) != kept  # idle too long: closed, a new one opened
        for _ in range(50):
            if sessions_of("before-rotation") == 0:
                break
            await asyncio.sleep(0.1)
        assert sessions_of("before-rotation") == 0
        assert await backend_pid(pool, after) == await backend_pid(pool, after)
    finally:
        await pool.close()
