"""A local HTTP server that answers /health the way the test tells it to (ok, degraded, ...)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from orion_operator.devenv.postgres import free_port
from tests.fixtures.health_bodies import DEGRADED_REDIS, ERROR_DATABASE, OK

BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    "ok": (200, OK),
    "degraded": (200, DEGRADED_REDIS),
    "error": (200, ERROR_DATABASE),
}


class ScriptedHealthServer:
    """`mode` is one of ok, degraded, error, hang (never answers) or an HTTP status like 500."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._release_hangs = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    async def _health(self, _: web.Request) -> web.StreamResponse:
        self.requests += 1
        mode = self.mode
        if mode == "hang":
            await self._release_hangs.wait()
        if mode in BODIES:
            status, body = BODIES[mode]
            return web.Response(
                status=status, text=json.dumps(body), content_type="application/json"
            )
        return web.Response(
            status=int(mode) if mode.isdigit() else 500, text="Internal Server Error"
        )

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, shutdown_timeout=1)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._runner = runner
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    @contextmanager
    def running(self) -> Iterator[ScriptedHealthServer]:
        ready = threading.Event()
        thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._release_hangs.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(10)
