"""The verification's smoke requests against a local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from orion_operator.api.apideployment import ApiDeploymentSpec, SmokeRequest
from orion_operator.rollout.smoke import api_base_url, run_smoke


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        status = 200 if body.get("password") == "right" else 401
        return web.json_response({}, status=status)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500)

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    app = web.Application()
    app.router.add_post("/auth/login", login)
    app.router.add_get("/reports", broken)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _request(**fields: object) -> SmokeRequest:
    return SmokeRequest.model_validate(fields)


LOGIN = _request(
    method="POST",
    path="/auth/login",
    headers={"Content-Type": "application/json"},
    body='{"email":"test@test.com","password":"test"}',
    expectStatus=[200, 401],
)


async def test_the_runbooks_login_passes_when_it_answers_one_of_the_expected_codes(
    base_url: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        result = await run_smoke(session, base_url, [LOGIN])
    assert result.passed and result.message == "1 smoke request(s) passed"


async def test_a_5xx_or_a_timeout_fails_and_says_which_request(base_url: str) -> None:
    requests = [LOGIN, _request(path="/reports"), _request(path="/slow", timeoutSeconds=0.2)]
    async with aiohttp.ClientSession() as session:
        result = await run_smoke(session, base_url, requests)
    assert not result.passed
    assert "GET /reports answered 500, expected 200" in result.message
    assert "GET /slow: no answer within 0.2s" in result.message


def test_smoke_requests_go_to_the_service_or_the_health_urls_origin() -> None:
    spec = ApiDeploymentSpec.model_validate({"image": "api:1", "port": 8080})
    assert api_base_url(spec, "orion-api", "shop") == "http://orion-api.shop.svc:8080"
    spec = ApiDeploymentSpec.model_validate(
        {"image": "api:1", "healthCheck": {"url": "https://api.example.test:8443/health"}}
    )
    assert api_base_url(spec, "orion-api", "shop") == "https://api.example.test:8443"
