"""The demo API's GET /health, served on a port, against a real PostgreSQL, Redis and BullMQ."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from bullmq import Queue

from orion_operator.demo.api import build_app, health_body
from orion_operator.devenv.postgres import free_port
from orion_operator.devenv.redis import LocalRedis
from orion_operator.health.contract import HealthState, classify_health
from orion_operator.health.triage import DependencyCheck, DependencyStatus, QueueCheck, TriageResult
from tests.conftest import AppDatabase
from tests.fixtures.health_bodies import OK as RUNBOOK_OK

QUEUES = ("dian", "backup", "reports")


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/health"
    finally:
        await runner.cleanup()


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.read()


def assert_contract_shape(body: dict[str, Any]) -> None:
    """Every key of the runbook's example, in its order, with its types; nothing else."""
    assert list(body) == ["status", "timestamp", "uptime", "environment", "services"]
    assert body["status"] in ("ok", "degraded", "error")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0
    assert isinstance(body["environment"], str)
    services = body["services"]
    assert list(services) == ["database", "redis", "queues", "responseTime"]
    assert services["database"] in ("connected", "disconnected")
    assert services["redis"] in ("connected", "disconnected")
    assert re.fullmatch(r"\d+ms", services["responseTime"])
    assert list(services["queues"]) == list(QUEUES)
    for queue in services["queues"].values():
        assert list(queue) == ["status", "waiting", "active", "failed"]
        assert queue["status"] in ("connected", "disconnected")
        assert all(isinstance(queue[count], int) for count in ("waiting", "active", "failed"))


def test_body_of_a_healthy_system_is_the_runbooks_ok_example() -> None:
    up = DependencyStatus.UP
    result = TriageResult(
        database=DependencyCheck("database", up),
        redis=DependencyCheck("redis", up),
        queues={name: QueueCheck(name, up) for name in QUEUES},
    )

    body = health_body(
        result,
        queues=QUEUES,
        environment="production",
        uptime_seconds=86400.4,
        response_ms=5.2,
        now=datetime.datetime(2026, 2, 19, 10, 0, tzinfo=datetime.UTC),
    )

    # Exactly the runbook's example answer.
    assert body == RUNBOOK_OK


async def test_health_is_ok_then_degraded_while_redis_is_stopped_then_ok_again(
    app_database: AppDatabase, disposable_redis: LocalRedis
) -> None:
    queue = Queue("dian", {"connection": disposable_redis.url})
    try:
        await queue.add("invoice", {"number": 1})
        await queue.add("invoice", {"number": 2})
    finally:
        await queue.close()
    app = build_app(app_database.url, disposable_redis.url, environment="staging")

    async with serve(app) as url:
        ok_code, ok_raw = await get(url)
        disposable_redis.stop()
        degraded_code, degraded_raw = await get(url)
        disposable_redis.start()
        again_code, again_raw = await get(url)

    ok, degraded, again = (json.loads(raw) for raw in (ok_raw, degraded_raw, again_raw))
    for body in (ok, degraded, again):
        assert_contract_shape(body)
    assert (ok_code, ok["status"], ok["environment"]) == (200, "ok", "staging")
    assert ok["services"]["queues"]["dian"] == {
        "status": "connected",
        "waiting": 2,
        "active": 0,
        "failed": 0,
    }
    assert (degraded_code, degraded["status"]) == (200, "degraded")
    assert degraded["services"]["database"] == "connected"
    assert degraded["services"]["redis"] == "disconnected"
    assert {q["status"] for q in degraded["services"]["queues"].values()} == {"disconnected"}
    assert (again_code, again["status"], again["services"]["redis"]) == (200, "ok", "connected")
    # The operator's own classifier reads these bodies the way the runbook's table does.
    assert classify_health(ok_code, ok_raw).state is HealthState.OK
    assert classify_health(degraded_code, degraded_raw).state is HealthState.DEGRADED
    for raw in (ok_raw, degraded_raw, again_raw):
        assert app_database.password.encode() not in raw
        assert disposable_redis.password is not None
        assert disposable_redis.password.encode() not in raw


async def test_database_down_is_error_with_503(app_database: AppDatabase, redis_url: str) -> None:
    host, _, _ = app_database.url.rpartition(":")
    stopped_database = f"{host}:{free_port()}/{app_database.name}"  # nothing listens there

    async with serve(build_app(stopped_database, redis_url)) as url:
        code, raw = await get(url)

    body = json.loads(raw)
    assert_contract_shape(body)
    assert (code, body["status"], body["environment"]) == (503, "error", "development")
    assert body["services"]["database"] == "disconnected"
    assert body["services"]["redis"] == "connected"
    assert classify_health(code, raw).state is HealthState.ERROR
    assert app_database.password.encode() not in raw


async def test_unset_urls_count_as_disconnected() -> None:
    async with serve(build_app(None, None)) as url:
        code, raw = await get(url)

    body = json.loads(raw)
    assert_contract_shape(body)
    assert (code, body["status"]) == (503, "error")
    assert body["services"]["redis"] == "disconnected"
    assert {q["status"] for q in body["services"]["queues"].values()} == {"disconnected"}
