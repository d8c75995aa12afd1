"""Classify a /health answer exactly as the runbook's table does: ok, degraded, error or down."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from orion_operator.alerts.model import Severity

CONNECTED = "connected"
# What the API may put in a report that goes into status: an int64 (the schema's integer) and a
# short text, so a strange /health answer cannot make the status write fail.
MAX_COUNT = 2**63 - 1
MAX_TEXT = 200
# Queues read from one answer, the first by name: each is a line in status and its own alert,
# so a body listing thousands (up to the 1 MiB read) must not become thousands of either.
MAX_QUEUES = 100


class HealthState(StrEnum):
    OK = "ok"  # everything works
    DEGRADED = "degraded"  # Redis or a queue is disconnected or failing
    ERROR = "error"  # the database is disconnected: critical
    DOWN = "down"  # no answer, a code other than 200, or not the contract


@dataclass(frozen=True)
class QueueHealth:
    status: str
    waiting: int = 0
    active: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Problem:
    """One failing check; `check` names it for alerts: api, database, redis, queue/<name>."""

    check: str
    severity: Severity
    reason: str
    message: str


@dataclass(frozen=True)
class HealthReport:
    state: HealthState
    message: str
    http_status: int | None = None
    database: str | None = None
    redis: str | None = None
    queues: dict[str, QueueHealth] = field(default_factory=dict)
    response_time: str | None = None
    problems: tuple[Problem, ...] = ()


def _as_count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return min(value, MAX_COUNT)
    return 0


def _as_text(value: Any) -> str:
    """A service's value as the body wrote it (true, 3, null), short; containers only by kind."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = "{…}"
    elif isinstance(value, list):
        text = "[…]"
    else:
        text = json.dumps(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _parse_queues(raw: Any) -> dict[str, QueueHealth]:
    if not isinstance(raw, dict):
        return {}
    queues = {}
    for name, detail in sorted(raw.items())[:MAX_QUEUES]:
        if isinstance(detail, dict):
            queues[_as_text(name)] = QueueHealth(
                status=_as_text(detail.get("status", "unknown")),
                waiting=_as_count(detail.get("waiting")),
                active=_as_count(detail.get("active")),
                failed=_as_count(detail.get("failed")),
            )
        else:
            queues[_as_text(name)] = QueueHealth(status=_as_text(detail))
    return queues


def _down(message: str, http_status: int | None = None) -> HealthReport:
    problem = Problem("api", Severity.CRITICAL, "ApiDown", message)
    return HealthReport(HealthState.DOWN, message, http_status, problems=(problem,))


def classify_health(
    http_status: int | None,
    body: bytes | None,
    *,
    failure: str | None = None,
    queue_failed_threshold: int | None = None,
) -> HealthReport:
    """Classify one probe. `failure` says why there was no answer (timeout, refused).

    A non-200 answer is `down`, unless its body is the contract saying `error`: the API did
    answer, and its own words (the database is disconnected) say more than the code.
    """
    if http_status is None:
        return _down(failure or "no answer")
    try:
        document = json.loads(body or b"")
    # RecursionError: a body nested deeper than the interpreter's stack is not the contract.
    except (ValueError, UnicodeDecodeError, RecursionError):
        document = None
    if not isinstance(document, dict) or document.get("status") not in ("ok", "degraded", "error"):
        return _down(f"HTTP {http_status}: the body is not the /health contract", http_status)
    services = document.get("services")
    services = services if isinstance(services, dict) else {}
    database, redis = services.get("database"), services.get("redis")
    database = _as_text(database) if database is not None else None
    redis = _as_text(redis) if redis is not None else None
    queues = _parse_queues(services.get("queues"))
    response_time = services.get("responseTime")
    observed = HealthReport(
        HealthState.OK,
        "all services connected",
        http_status=http_status,
        database=database,
        redis=redis,
        queues=queues,
        response_time=_as_text(response_time) if response_time is not None else None,
    )

    if document["status"] == "error" or (database is not None and database != CONNECTED):
        message = f"database {database or 'unknown'}: the API reports status error"
        problem = Problem("database", Severity.CRITICAL, "DatabaseDown", message)
        return replace(observed, state=HealthState.ERROR, message=message, problems=(problem,))
    if http_status != 200:
        return _down(f"HTTP {http_status} from /health", http_status)

    problems = []
    if redis is not None and redis != CONNECTED:
        problems.append(Problem("redis", Severity.WARNING, "RedisDown", f"redis {redis}"))
    for name, queue in sorted(queues.items()):
        if queue.status != CONNECTED:
            message = f"queue {name} {queue.status}"
            problems.append(Problem(f"queue/{name}", Severity.WARNING, "QueueDown", message))
        elif queue_failed_threshold is not None and queue.failed > queue_failed_threshold:
            message = f"queue {name} has {queue.failed} failed jobs (over {queue_failed_threshold})"
            problems.append(Problem(f"queue/{name}", Severity.WARNING, "QueueFailing", message))
    if problems:
        message = "; ".join(problem.message for problem in problems)
        return replace(
            observed, state=HealthState.DEGRADED, message=message, problems=tuple(problems)
        )
    if document["status"] == "degraded":
        message = "the API reports status degraded without naming a service"
        problem = Problem("api", Severity.WARNING, "HealthDegraded", message)
        return replace(observed, state=HealthState.DEGRADED, message=message, problems=(problem,))
    return observed
