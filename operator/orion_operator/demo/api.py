"""A reference implementation of the runbook's `GET /health`, built from real checks.

The body is exactly the runbook's contract::

    {"status": "ok" | "degraded" | "error",
     "timestamp": "2026-02-19T10:00:00.000Z", "uptime": 86400, "environment": "production",
     "services": {"database": "connected" | "disconnected",
                  "redis": "connected" | "disconnected",
                  "queues": {"dian": {"status": "connected", "waiting": 0, "active": 0,
                                      "failed": 0}, ...},
                  "responseTime": "5ms"}}

The services are checked for real on every request, with the operator's own triage code:
PostgreSQL `SELECT 1` through DATABASE_URL, Redis `PING` through REDIS_URL and the BullMQ queues'
counts read from that Redis. A dependency whose URL is not set counts as disconnected.

Status, as the runbook's table says: `error` when the database is disconnected, `degraded` when
Redis or a queue is disconnected, otherwise `ok`.

HTTP code: 200 for `ok` and `degraded` (the API still serves; only auxiliary services are
missing), 503 Service Unavailable for `error` (without its database the API cannot do its work).
The runbook's external monitor treats any code other than 200 as down, which is right for
`error`; the operator reads the body of a non-200 answer too, so a 503 carrying `status: "error"`
is classified as "database down", not as an unreachable API.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orion_operator.health.triage import (
    DEFAULT_QUEUES,
    DEFAULT_TIMEOUT_SECONDS,
    DependencyCheck,
    TriageResult,
    triage,
)

CONNECTED = "connected"
DISCONNECTED = "disconnected"
STATUS_CODES = {"ok": 200, "degraded": 200, "error": 503}


@dataclass(frozen=True)
class DemoSettings:
    database_url: str | None
    redis_url: str | None
    queues: tuple[str, ...]
    environment: str
    check_timeout_seconds: float
    started_at: float  # time.monotonic() when the app was built


SETTINGS = web.AppKey("settings", DemoSettings)


def _connection(check: DependencyCheck) -> str:
    return CONNECTED if check.up else DISCONNECTED


def health_body(
    result: TriageResult,
    *,
    queues: Iterable[str],
    environment: str,
    uptime_seconds: float,
    response_ms: float,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The contract's JSON body from a triage result (pure: no I/O, no clock)."""
    queue_bodies = {}
    for name in queues:
        queue = result.queues.get(name)
        connected = queue is not None and queue.connected
        queue_bodies[name] = {
            "status": CONNECTED if connected else DISCONNECTED,
            "waiting": queue.waiting if queue else 0,
            "active": queue.active if queue else 0,
            "failed": queue.failed if queue else 0,
        }
    database, redis = _connection(result.database), _connection(result.redis)
    if database == DISCONNECTED:
        status = "error"
    elif redis == DISCONNECTED or any(q["status"] == DISCONNECTED for q in queue_bodies.values()):
        status = "degraded"
    else:
        status = "ok"
    timestamp = now.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return {
        "status": status,
        "timestamp": timestamp.replace("+00:00", "Z"),
        "uptime": int(uptime_seconds),
        "environment": environment,
        "services": {
            "database": database,
            "redis": redis,
            "queues": queue_bodies,
            "responseTime": f"{round(response_ms)}ms",
        },
    }


async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    started = time.monotonic()
    result = await triage(
        settings.database_url,
        settings.redis_url,
        settings.queues,
        timeout_seconds=settings.check_timeout_seconds,
    )
    body = health_body(
        result,
        queues=settings.queues,
        environment=settings.environment,
        uptime_seconds=started - settings.started_at,
        response_ms=(time.monotonic() - started) * 1000,
        now=datetime.datetime.now(datetime.UTC),
    )
    return web.json_response(
        body, status=STATUS_CODES[body["status"]], headers={"Cache-Control": "no-store"}
    )


def build_app(
    database_url: str | None,
    redis_url: str | None,
    queues: Iterable[str] = DEFAULT_QUEUES,
    environment: str = "development",
    *,
    check_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> web.Application:
    """An aiohttp application serving `GET /health`; URLs of None count as disconnected."""
    app = web.Application()
    app[SETTINGS] = DemoSettings(
        database_url=database_url,
        redis_url=redis_url,
        queues=tuple(queues),
        environment=environment,
        check_timeout_seconds=check_timeout_seconds,
        started_at=time.monotonic(),
    )
    app.router.add_get("/health", health)
    return app


def run_demo_api(
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    queues: Iterable[str] = DEFAULT_QUEUES,
    environment: str | None = None,
) -> None:
    """Serve until interrupted. URLs default to $DATABASE_URL and $REDIS_URL, the environment
    name to $NODE_ENV (the Orion API is a Node service) or "development"."""
    app = build_app(
        database_url or os.environ.get("DATABASE_URL"),
        redis_url or os.environ.get("REDIS_URL"),
        queues,
        environment or os.environ.get("NODE_ENV") or "development",
    )
    web.run_app(app, host=host, port=port)
