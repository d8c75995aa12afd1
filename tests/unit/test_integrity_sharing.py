"""One integrity check per database serves every Tenant on it, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from orion_operator.settings import DEFAULT_INTEGRITY_ALLOW_LIST
from orion_operator.tenancy.errors import DatabaseUnavailable
from orion_operator.tenancy.integrity import (
    IntegrityReport,
    SharedIntegrityChecks,
    run_integrity_check,
)
from orion_operator.tenancy.rows import DEFAULT_TENANT_TABLE
from tests.conftest import AppDatabase

STRAY = """INSERT INTO "Product" (id, "tenantId", sku, name) VALUES ('stray', NULL, 'X', 'x')"""


class CountedCheck:
    """The real check against `url`, counting how often the database is really asked."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runs = 0

    async def __call__(self) -> IntegrityReport:
        self.runs += 1
        return await run_integrity_check(
            self.url, DEFAULT_INTEGRITY_ALLOW_LIST, connect_timeout_seconds=2
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tenants_reconciling_at_once_share_one_check(app_database: AppDatabase) -> None:
    checks = SharedIntegrityChecks()
    run = CountedCheck(app_database.url)
    seen = await asyncio.gather(
        *(checks.check(app_database.url, DEFAULT_TENANT_TABLE, run) for _ in range(50))
    )
    assert run.runs == 1
    assert {outcome.result().clean for outcome in seen} == {True}


async def test_a_recent_check_is_reused_until_it_is_too_old_or_one_is_asked_for(
    app_database: AppDatabase,
) -> None:
    clock = Clock()
    checks = SharedIntegrityChecks(max_age_seconds=30, clock=clock)
    run = CountedCheck(app_database.url)

    async def check(fresh: bool = False) -> IntegrityReport:
        outcome = await checks.check(app_database.url, DEFAULT_TENANT_TABLE, run, fresh=fresh)
        return outcome.result()

    assert (await check()).clean
    app_database.execute(STRAY)
    clock.now += 29
    assert (await check()).clean  # 29 s old: reused, the new row not seen yet
    assert run.runs == 1
    clock.now += 2
    assert (await check()).null_tenant_rows == {"Product": 1}  # too old: checked again
    app_database.execute("""DELETE FROM "Product" WHERE id = 'stray'""")
    clock.now += 1
    assert (await check(fresh=True)).clean  # the annotation: checked now
    assert run.runs == 3


async def test_an_unreachable_database_is_dialled_once_for_all_tenants() -> None:
    url = "postgresql://orion:Sup3r-Secret@127.0.0.1:1/orion"
    checks = SharedIntegrityChecks()
    run = CountedCheck(url)
    seen = await asyncio.gather(*(checks.check(url, DEFAULT_TENANT_TABLE, run) for _ in range(20)))
    assert run.runs == 1
    for outcome in seen:
        with pytest.raises(DatabaseUnavailable):
            outcome.result()
