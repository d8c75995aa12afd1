"""GET the /health URL without blocking the event loop, and classify the answer."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from orion_operator.health.contract import HealthReport, classify_health

MAX_BODY_BYTES = 1 << 20  # a /health body is small; never buffer an endless one


async def probe_health(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_seconds: float,
    queue_failed_threshold: int | None = None,
) -> tuple[HealthReport, float]:
    """One probe: the classified report and how long it took, in seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            async with session.get(url, allow_redirects=False) as response:
                body = await response.content.read(MAX_BODY_BYTES)
                status = response.status
    except TimeoutError:
        report = classify_health(None, None, failure=f"no answer within {timeout_seconds:g}s")
        return report, time.monotonic() - started
    except aiohttp.ClientError as error:
        report = classify_health(None, None, failure=f"{type(error).__name__}: {error}")
        return report, time.monotonic() - started
    report = classify_health(status, body, queue_failed_threshold=queue_failed_threshold)
    return report, time.monotonic() - started
