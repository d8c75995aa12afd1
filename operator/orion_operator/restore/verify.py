"""Verification after a restore: queries that each return one number, checked against bounds.

The runbook's check is `SELECT COUNT(*) FROM "Tenant"` (at least one tenant). Each query runs in
its own read-only transaction with a statement timeout, so a verification can neither change the
restored data nor hang the restore.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from orion_operator.restore.database import connect, scrub
from orion_operator.restore.errors import RestoreError

DEFAULT_SQL = 'SELECT COUNT(*) FROM "Tenant"'
STATEMENT_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Check:
    sql: str
    min: int | None = None
    max: int | None = None
    equals: int | None = None

    @property
    def expectation(self) -> str:
        parts = []
        if self.equals is not None:
            parts.append(f"= {self.equals}")
        if self.min is not None:
            parts.append(f">= {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return " and ".join(parts) or "any number"

    def holds(self, value: int) -> bool:
        return (
            (self.equals is None or value == self.equals)
            and (self.min is None or value >= self.min)
            and (self.max is None or value <= self.max)
        )


DEFAULT_CHECKS = (Check(DEFAULT_SQL, min=1),)


@dataclass(frozen=True)
class CheckResult:
    sql: str
    expect: str
    value: int | None
    passed: bool
    message: str | None = None

    def describe(self) -> str:
        shown = "no value" if self.value is None else str(self.value)
        verdict = (
            "passed" if self.passed else f"FAILED{f': {self.message}' if self.message else ''}"
        )
        return f"{self.sql} = {shown} (expected {self.expect}): {verdict}"


def _as_integer(row: tuple[object, ...] | None) -> int:
    if row is None or len(row) != 1:
        raise ValueError("the query must return one row with one column")
    value = row[0]
    if isinstance(value, bool) or value is None:
        raise ValueError(f"the query returned {value!r}, not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal | float) and value == int(value):
        return int(value)
    raise ValueError(f"the query returned {value!r}, not an integer")


async def run_checks(database_url: str, checks: Iterable[Check]) -> list[CheckResult]:
    """Run every check; a failing query is a failed check (with its error), not an exception.

    Raises RestoreError("DatabaseUnreachable") only when the database cannot be reached at all.
    """
    checks = list(checks)
    if not checks:
        return []
    conn = await connect(database_url)
    results = []
    async with conn:
        await conn.set_read_only(True)
        for check in checks:
            try:
                async with conn.transaction():
                    await conn.execute(
                        sql.SQL("SET LOCAL statement_timeout = {}").format(
                            sql.Literal(STATEMENT_TIMEOUT_MS)
                        )
                    )
                    cursor = await conn.execute(check.sql)
                    value = _as_integer(await cursor.fetchone())
            except psycopg.OperationalError as error:
                if conn.closed:
                    raise RestoreError(
                        "DatabaseUnreachable",
                        f"lost the target database during verification: "
                        f"{scrub(str(error), database_url)}",
                    ) from None
                results.append(_failed(check, scrub(_first(error), database_url)))
                continue
            except (psycopg.Error, ValueError) as error:
                results.append(_failed(check, scrub(_first(error), database_url)))
                continue
            passed = check.holds(value)
            results.append(
                CheckResult(
                    check.sql,
                    check.expectation,
                    value,
                    passed,
                    None if passed else f"{value} is not {check.expectation}",
                )
            )
    return results


def _failed(check: Check, message: str) -> CheckResult:
    return CheckResult(check.sql, check.expectation, None, False, message)


def _first(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def summary(results: list[CheckResult]) -> str:
    failed = [result for result in results if not result.passed]
    if not failed:
        return f"{len(results)} verification quer{'y' if len(results) == 1 else 'ies'} passed"
    return "verification failed: " + "; ".join(result.describe() for result in failed)
