"""The runbook's incident checks against a real PostgreSQL, a real Redis and real BullMQ queues."""

from __future__ import annotations

import asyncio
import errno
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from bullmq import Queue, Worker

from orion_operator.alerts.model import Severity
from orion_operator.devenv.postgres import LocalPostgres, free_port
from orion_operator.devenv.redis import LocalRedis
from orion_operator.health.triage import (
    DependencyStatus,
    check_postgres,
    check_queues,
    check_redis,
    triage,
    triage_dependencies,
)
from tests.conftest import AppDatabase

QUEUES = ("dian", "backup", "reports")


def with_port(url: str, port: int) -> str:
    """The same URL, credentials and all, pointing at a port where nothing listens."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def own_postgres() -> Iterator[tuple[LocalPostgres, str]]:
    """A PostgreSQL of this test's own, to stop; yields it and a password-bearing URL."""
    server = LocalPostgres().start()
    password = "pw-" + secrets.token_hex(12)
    server.create_role("probe", password)
    try:
        yield server, server.url_for("postgres", "probe", password)
    finally:
        server.stop()


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[dict[str, Queue]]:
    opened = {name: Queue(name, {"connection": redis_url}) for name in QUEUES}
    try:
        yield opened
    finally:
        for queue in opened.values():
            await queue.close()


async def test_triage_finds_database_redis_and_queues_up(
    app_database: AppDatabase, redis_url: str
) -> None:
    result = await triage(app_database.url, redis_url, QUEUES)

    assert result.database.status is DependencyStatus.UP
    assert result.redis.status is DependencyStatus.UP
    assert list(result.queues) == list(QUEUES)
    assert all(queue.connected for queue in result.queues.values())
    assert result.culprit is None
    assert result.summary == "database up; redis up; queues up"
    assert result.problems == ()


async def test_stopped_redis_is_named_down_and_is_the_culprit_until_it_comes_back(
    app_database: AppDatabase, disposable_redis: LocalRedis
) -> None:
    url = disposable_redis.url
    assert (await triage(app_database.url, url, QUEUES)).culprit is None

    disposable_redis.stop()
    down = await triage(app_database.url, url, QUEUES)
    disposable_redis.start()
    back = await triage(app_database.url, url, QUEUES)

    assert down.database.status is DependencyStatus.UP
    assert down.redis.status is DependencyStatus.DOWN
    assert down.culprit == "redis"
    assert down.summary.startswith("database up; redis down: ")
    refused = f"Error {errno.ECONNREFUSED} connecting to 127.0.0.1:{disposable_redis.port}"
    assert down.redis.detail.startswith(refused)
    assert down.summary.endswith("; queues down: dian, backup, reports")
    assert not any(queue.connected for queue in down.queues.values())
    assert [p.check for p in down.problems] == [
        "redis",
        "queue/dian",
        "queue/backup",
        "queue/reports",
    ]
    assert disposable_redis.password is not None
    assert disposable_redis.password not in repr(down)
    assert back.culprit is None
    assert back.summary == "database up; redis up; queues up"


async def test_stopped_database_is_down_and_the_culprit_even_when_redis_is_down_too(
    own_postgres: tuple[LocalPostgres, str], disposable_redis: LocalRedis
) -> None:
    server, url = own_postgres
    password = urlsplit(url).password
    assert (await check_postgres(url)).status is DependencyStatus.UP

    server.stop()
    disposable_redis.stop()
    result = await triage(url, disposable_redis.url, QUEUES)

    assert result.database.status is DependencyStatus.DOWN
    assert result.redis.status is DependencyStatus.DOWN
    assert result.culprit == "database"  # a rollback cannot fix this one
    assert result.summary.startswith("database down: cannot connect to PostgreSQL: ")
    assert "; redis down: " in result.summary
    assert result.problems[0].check == "database"
    assert result.problems[0].severity is Severity.CRITICAL
    assert password is not None and password not in repr(result)


async def test_wrong_passwords_are_reported_without_the_passwords(
    app_database: AppDatabase, redis_server: LocalRedis
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    database_url = with_password(app_database.url, wrong)
    redis_url = with_password(redis_server.url, wrong)

    result = await triage(database_url, redis_url, QUEUES)

    assert result.culprit == "database"
    assert "password authentication failed" in result.database.detail
    assert result.redis.status is DependencyStatus.DOWN
    assert "invalid username-password pair" in result.redis.detail
    for secret in (wrong, app_database.password, redis_server.password):
        assert secret is not None
        assert secret not in repr(result)
        assert secret not in repr(result.problems)


async def test_database_on_a_port_where_nothing_listens_is_down(app_database: AppDatabase) -> None:
    url = with_port(app_database.url, free_port())

    check = await check_postgres(url)

    assert check.status is DependencyStatus.DOWN
    assert "Connection refused" in check.detail
    assert app_database.password not in check.detail


async def test_queue_counts_match_jobs_added_and_failed_with_bullmq(
    redis_url: str, queues: dict[str, Queue]
) -> None:
    for number in range(3):
        await queues["dian"].add("invoice", {"number": number})
    await queues["dian"].add("urgent-invoice", {}, {"priority": 1})  # prioritized is waiting too
    await queues["dian"].add("later", {}, {"delay": 60_000})  # delayed is not waiting
    for number in range(2):
        await queues["reports"].add("monthly", {"number": number}, {"attempts": 1})
    await queues["backup"].add("nightly", {})
    await queues["backup"].add("weekly", {})

    failures: list[object] = []
    failed = asyncio.Event()

    async def broken_report(job: object, token: str) -> None:
        raise RuntimeError("report template missing")

    def on_failed(job: object, error: object) -> None:
        # bullmq emits "failed" once the job is in the failed set.
        failures.append(job)
        if len(failures) == 2:
            failed.set()

    reports_worker = Worker("reports", broken_report, {"connection": redis_url})
    reports_worker.on("failed", on_failed)
    try:
        await asyncio.wait_for(failed.wait(), 10)
    finally:
        await reports_worker.close()

    started, release = asyncio.Event(), asyncio.Event()

    async def slow_backup(job: object, token: str) -> None:
        started.set()
        await release.wait()

    backup_worker = Worker("backup", slow_backup, {"connection": redis_url})
    try:
        await asyncio.wait_for(started.wait(), 10)
        counts = await check_queues(redis_url, QUEUES)
        bullmq_backup = await queues["backup"].getJobCounts("waiting", "active")
    finally:
        release.set()
        await backup_worker.close()

    dian, backup, reports = counts["dian"], counts["backup"], counts["reports"]
    assert (dian.waiting, dian.active, dian.failed, dian.delayed) == (4, 0, 0, 1)
    assert (backup.waiting, backup.active, backup.failed) == (1, 1, 0)
    assert (reports.waiting, reports.active, reports.failed) == (0, 0, 2)
    # Newer bullmq versions add keys (e.g. "paused") to what getJobCounts returns.
    assert (bullmq_backup["waiting"], bullmq_backup["active"]) == (backup.waiting, backup.active)
    assert all(check.connected and not check.paused for check in counts.values())


async def test_a_paused_queue_still_counts_its_waiting_jobs(
    redis_url: str, queues: dict[str, Queue]
) -> None:
    await queues["dian"].add("invoice", {})
    await queues["dian"].pause()

    dian = (await check_queues(redis_url, ["dian"]))["dian"]

    assert (dian.paused, dian.waiting) == (True, 1)


async def test_older_bullmq_layouts_are_counted_paused_list_and_wait_marker(redis_url: str) -> None:
    # As older BullMQ versions left them: a paused list, and a "0:" marker at the wait list's tail.
    client = redis.Redis.from_url(redis_url)
    try:
        client.lpush("orion:old:wait", "1", "2", "3")
        client.rpush("orion:old:wait", "0:0")
        client.lpush("orion:old:paused", "4", "5")
        client.zadd("orion:old:prioritized", {"6": 1})
        client.lpush("orion:old:active", "7")
        client.zadd("orion:old:failed", {"8": 1, "9": 2})
        client.hset("orion:old:meta", "paused", "1")
    finally:
        client.close()

    old = (await check_queues(redis_url, ["old"], prefix="orion"))["old"]

    assert (old.waiting, old.active, old.failed, old.paused) == (6, 1, 2, True)


async def test_a_hung_redis_is_down_within_the_timeout_and_checks_run_concurrently(
    app_database: AppDatabase, disposable_redis: LocalRedis
) -> None:
    disposable_redis.pause()
    try:
        started = time.monotonic()
        result = await triage(app_database.url, disposable_redis.url, QUEUES, timeout_seconds=1)
        elapsed = time.monotonic() - started
    finally:
        disposable_redis.resume()

    assert result.redis.detail == "no answer to PING within 1s"
    assert result.queues["dian"].detail == "no answer from Redis within 1s"
    assert result.database.status is DependencyStatus.UP
    # The PING and the queue read each waited 1 s, side by side rather than one after the other.
    assert elapsed < 1.8
    assert (await check_redis(disposable_redis.url)).status is DependencyStatus.UP


async def test_unconfigured_dependencies_are_unknown_not_down() -> None:
    result = await triage(None, None, QUEUES)

    assert result.database.status is DependencyStatus.UNKNOWN
    assert result.redis.status is DependencyStatus.UNKNOWN
    assert result.queues == {}
    assert result.culprit is None
    assert result.summary == "database not configured; redis not configured"


async def test_triage_dependencies_gives_the_health_cycle_its_problems(
    app_database: AppDatabase, redis_url: str
) -> None:
    down_url = with_port(app_database.url, free_port())

    outcome = await triage_dependencies(down_url, redis_url, ["dian"])

    assert outcome.culprit == "database"
    assert outcome.summary.startswith("database down: ")
    assert outcome.summary.endswith("; redis up; queues up")
    assert [(p.check, p.severity, p.reason) for p in outcome.problems] == [
        ("database", Severity.CRITICAL, "DatabaseDown")
    ]
