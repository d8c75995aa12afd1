"""The runbook's incident checks, done by the operator itself ("Respuesta a Incidentes", step 3).

`psql $DATABASE_URL -c "SELECT 1;"` and `redis-cli -u $REDIS_URL ping` become async checks with
their own timeouts, run concurrently, plus the BullMQ queue counts read straight from Redis. The
result names the dependency that is down, so a rollout can tell whether a rollback could help
(it cannot fix a down database). Every message is redacted: no password from a URL gets out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

import psycopg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from orion_operator.alerts.model import Severity
from orion_operator.health.contract import Problem
from orion_operator.health.monitor import TriageOutcome
from orion_operator.redaction import redact, secrets_of_url
from orion_operator.tenancy.database import connect
from orion_operator.tenancy.errors import TenancyError

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_QUEUES = ("dian", "backup", "reports")
BULLMQ_PREFIX = "bull"

DATABASE = "database"
REDIS = "redis"


class DependencyStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # not configured, so not checked


@dataclass(frozen=True)
class DependencyCheck:
    """One check's outcome; `detail` is the redacted reason when down."""

    name: str
    status: DependencyStatus
    detail: str = ""
    latency_seconds: float | None = None

    @property
    def up(self) -> bool:
        return self.status is DependencyStatus.UP


@dataclass(frozen=True)
class QueueCheck:
    """A BullMQ queue as its keys in Redis show it. `waiting` includes prioritized jobs.

    Up (connected) means Redis answered: a queue that never had a job reads as up and empty.
    """

    name: str
    status: DependencyStatus
    waiting: int = 0
    active: int = 0
    failed: int = 0
    delayed: int = 0
    paused: bool = False
    detail: str = ""

    @property
    def connected(self) -> bool:
        return self.status is DependencyStatus.UP


@dataclass(frozen=True)
class TriageResult:
    database: DependencyCheck
    redis: DependencyCheck
    queues: Mapping[str, QueueCheck] = field(default_factory=dict)
    summary: str = ""
    # The first dependency found down, in the order database, redis, queue/<name>; None if none.
    culprit: str | None = None

    @property
    def problems(self) -> tuple[Problem, ...]:
        """The down dependencies as the alerting code's problems (check names as in alerts)."""
        found = []
        if self.database.status is DependencyStatus.DOWN:
            message = f"database down: {self.database.detail}"
            found.append(Problem(DATABASE, Severity.CRITICAL, "DatabaseDown", message))
        if self.redis.status is DependencyStatus.DOWN:
            message = f"redis down: {self.redis.detail}"
            found.append(Problem(REDIS, Severity.WARNING, "RedisDown", message))
        for name, queue in self.queues.items():
            if queue.status is DependencyStatus.DOWN:
                message = f"queue {name} down: {queue.detail}"
                found.append(Problem(f"queue/{name}", Severity.WARNING, "QueueDown", message))
        return tuple(found)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _failure(error: BaseException, secrets: list[str]) -> str:
    text = _one_line(str(error)) or type(error).__name__
    return redact(text, secrets)


def _redis_client(url: str) -> aioredis.Redis:
    # One attempt, no retries: a health check reports the state now, not after a backoff.
    # The caller's asyncio.timeout bounds the whole exchange, connect included.
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))


async def check_postgres(
    url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> DependencyCheck:
    """`SELECT 1` over a fresh connection, like the runbook's `psql $DATABASE_URL`."""
    secrets = secrets_of_url(url)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            # libpq counts whole seconds and treats anything under 2 as 2.
            connect_timeout = max(2, math.ceil(timeout_seconds))
            async with connect(url, connect_timeout_seconds=connect_timeout) as connection:
                await connection.execute("SELECT 1")
    except TimeoutError:
        detail = f"no answer to SELECT 1 within {timeout_seconds:g}s"
        return DependencyCheck(DATABASE, DependencyStatus.DOWN, detail)
    except (TenancyError, psycopg.Error, OSError) as error:
        return DependencyCheck(DATABASE, DependencyStatus.DOWN, _failure(error, secrets))
    latency = time.monotonic() - started
    return DependencyCheck(DATABASE, DependencyStatus.UP, latency_seconds=latency)


async def check_redis(
    url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> DependencyCheck:
    """PING, like the runbook's `redis-cli -u $REDIS_URL ping`."""
    secrets = secrets_of_url(url)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            client = _redis_client(url)
            try:
                # redis-py types ping() for its sync and async clients alike.
                await cast(Awaitable[bool], client.ping())
            finally:
                await client.aclose()
    except TimeoutError:
        detail = f"no answer to PING within {timeout_seconds:g}s"
        return DependencyCheck(REDIS, DependencyStatus.DOWN, detail)
    except (RedisError, OSError, ValueError) as error:
        return DependencyCheck(REDIS, DependencyStatus.DOWN, _failure(error, secrets))
    latency = time.monotonic() - started
    return DependencyCheck(REDIS, DependencyStatus.UP, latency_seconds=latency)


# BullMQ's key layout (the installed bullmq's queue_keys.py and getCounts-1.lua):
#   <prefix>:<queue>:wait         list  jobs ready to run
#   <prefix>:<queue>:paused       list  jobs of a paused queue (older BullMQ; newer ones keep them
#                                       in `wait` and set `paused` in `meta`)
#   <prefix>:<queue>:prioritized  zset  waiting jobs that have a priority
#   <prefix>:<queue>:active       list  jobs being processed
#   <prefix>:<queue>:failed       zset
#   <prefix>:<queue>:delayed      zset
#   <prefix>:<queue>:meta         hash  `paused` field when the queue is paused
# A list's tail can hold a legacy marker entry ("0:<ts>"), which is not a job.
_LEGACY_MARKER = b"0:"
_COMMANDS_PER_QUEUE = 9


def _list_length(length: int, tail: bytes | None) -> int:
    if tail is not None and tail.startswith(_LEGACY_MARKER):
        return max(0, length - 1)
    return length


async def check_queues(
    redis_url: str,
    queue_names: Iterable[str],
    prefix: str = BULLMQ_PREFIX,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, QueueCheck]:
    """Each queue's counts in one round trip; every queue is down when Redis does not answer."""
    names = list(dict.fromkeys(queue_names))
    if not names:
        return {}
    secrets = secrets_of_url(redis_url)
    try:
        async with asyncio.timeout(timeout_seconds):
            client = _redis_client(redis_url)
            try:
                pipeline = client.pipeline(transaction=False)
                for name in names:
                    key = f"{prefix}:{name}"
                    pipeline.llen(f"{key}:wait")
                    pipeline.lindex(f"{key}:wait", -1)
                    pipeline.llen(f"{key}:paused")
                    pipeline.lindex(f"{key}:paused", -1)
                    pipeline.zcard(f"{key}:prioritized")
                    pipeline.llen(f"{key}:active")
                    pipeline.zcard(f"{key}:failed")
                    pipeline.zcard(f"{key}:delayed")
                    pipeline.hexists(f"{key}:meta", "paused")
                replies = await pipeline.execute()
            finally:
                await client.aclose()
    except TimeoutError:
        detail = f"no answer from Redis within {timeout_seconds:g}s"
        return {name: QueueCheck(name, DependencyStatus.DOWN, detail=detail) for name in names}
    except (RedisError, OSError, ValueError) as error:
        detail = _failure(error, secrets)
        return {name: QueueCheck(name, DependencyStatus.DOWN, detail=detail) for name in names}

    checks = {}
    for index, name in enumerate(names):
        wait, wait_tail, paused, paused_tail, prioritized, active, failed, delayed, is_paused = (
            replies[index * _COMMANDS_PER_QUEUE : (index + 1) * _COMMANDS_PER_QUEUE]
        )
        checks[name] = QueueCheck(
            name,
            DependencyStatus.UP,
            waiting=_list_length(wait, wait_tail) + _list_length(paused, paused_tail) + prioritized,
            active=int(active),
            failed=int(failed),
            delayed=int(delayed),
            paused=bool(is_paused),
        )
    return checks


async def _not_configured(name: str) -> DependencyCheck:
    return DependencyCheck(name, DependencyStatus.UNKNOWN, "not configured")


async def _no_queues() -> dict[str, QueueCheck]:
    return {}


def _describe(check: DependencyCheck) -> str:
    if check.status is DependencyStatus.DOWN:
        return f"{check.name} down: {check.detail}"
    if check.status is DependencyStatus.UNKNOWN:
        return f"{check.name} {check.detail}"
    return f"{check.name} up"


def _describe_queues(queues: Mapping[str, QueueCheck], redis_down: bool) -> str | None:
    if not queues:
        return None
    down = [queue for queue in queues.values() if not queue.connected]
    if not down:
        return "queues up"
    names = ", ".join(queue.name for queue in down)
    # When Redis itself is down the reason was just given; do not repeat it.
    return f"queues down: {names}" if redis_down else f"queues down: {names} ({down[0].detail})"


async def triage(
    database_url: str | None,
    redis_url: str | None,
    queue_names: Iterable[str] = DEFAULT_QUEUES,
    *,
    prefix: str = BULLMQ_PREFIX,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> TriageResult:
    """Check PostgreSQL, Redis and the queues concurrently and say which one is down."""
    database, redis, queues = await asyncio.gather(
        check_postgres(database_url, timeout_seconds=timeout_seconds)
        if database_url
        else _not_configured(DATABASE),
        check_redis(redis_url, timeout_seconds=timeout_seconds)
        if redis_url
        else _not_configured(REDIS),
        check_queues(redis_url, queue_names, prefix, timeout_seconds=timeout_seconds)
        if redis_url
        else _no_queues(),
    )
    redis_down = redis.status is DependencyStatus.DOWN
    parts = [_describe(database), _describe(redis)]
    if (queue_part := _describe_queues(queues, redis_down)) is not None:
        parts.append(queue_part)

    culprit = None
    if database.status is DependencyStatus.DOWN:
        culprit = DATABASE
    elif redis_down:
        culprit = REDIS
    else:
        culprit = next((f"queue/{name}" for name, q in queues.items() if not q.connected), None)
    return TriageResult(database, redis, queues, summary="; ".join(parts), culprit=culprit)


async def triage_dependencies(
    database_url: str | None,
    redis_url: str | None,
    queue_names: Iterable[str] = DEFAULT_QUEUES,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> TriageOutcome:
    """`triage` in the shape the health cycle (health/monitor.py) records and alerts on."""
    result = await triage(database_url, redis_url, queue_names, timeout_seconds=timeout_seconds)
    return TriageOutcome(result.summary, result.culprit, result.problems)
