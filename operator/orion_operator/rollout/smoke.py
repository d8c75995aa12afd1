"""The verification's smoke requests, such as the runbook's `POST /auth/login`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp

from orion_operator.api.apideployment import ApiDeploymentSpec, SmokeRequest
from orion_operator.redaction import redact, secrets_of_url
from orion_operator.rollout.gates import SmokeView


def api_base_url(spec: ApiDeploymentSpec, name: str, namespace: str) -> str:
    """The owned Service, or the origin of healthCheck.url when the probe goes elsewhere."""
    if spec.health_check.url:
        parts = urlsplit(spec.health_check.url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"http://{name}.{namespace}.svc:{spec.port}"


async def _one(session: aiohttp.ClientSession, base_url: str, request: SmokeRequest) -> str | None:
    """None when the answer is one of the expected codes; otherwise what went wrong."""
    what = f"{request.method.value} {request.path}"
    try:
        async with asyncio.timeout(request.timeout_seconds):
            async with session.request(
                request.method.value,
                base_url + request.path,
                headers=request.headers,
                data=request.body.encode() if request.body is not None else None,
                allow_redirects=False,
            ) as response:
                await response.content.read(1 << 16)
                status = response.status
    except TimeoutError:
        return f"{what}: no answer within {request.timeout_seconds:g}s"
    except aiohttp.ClientError as error:
        return f"{what}: {type(error).__name__}: {error}"
    if status in request.expect_status:
        return None
    expected = ", ".join(map(str, request.expect_status))
    return f"{what} answered {status}, expected {expected}"


async def run_smoke(
    session: aiohttp.ClientSession, base_url: str, requests: Sequence[SmokeRequest]
) -> SmokeView:
    """Every request once, in order; all must answer one of their expected codes."""
    problems = [problem for r in requests if (problem := await _one(session, base_url, r))]
    if problems:
        return SmokeView(False, redact("; ".join(problems), secrets_of_url(base_url)))
    return SmokeView(True, f"{len(requests)} smoke request(s) passed")
