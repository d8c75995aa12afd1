"""A local stand-in for the Orion API whose answers depend on the image the Deployment runs.

kwok's pods serve nothing, so the ApiDeployment's healthCheck.url points here. A watch on the
Deployment (in a thread, as a real client would see it) keeps `image` current; /health and
/auth/login answer as the test scripted for that image (`health`, `login`). Every probe is
recorded with its arrival time and the answer it got, and every template change with its
time, so a test or the rollout benchmark can measure from the first failing probe.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment

from orion_operator.devenv.postgres import free_port
from tests.fixtures.health_bodies import DEGRADED_REDIS, ERROR_DATABASE, OK

BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    "ok": (200, OK),
    "degraded": (200, DEGRADED_REDIS),
    "error": (503, ERROR_DATABASE),
}


@dataclass(frozen=True)
class Probe:
    at: float  # time.monotonic()
    image: str | None
    answer: str


@dataclass(frozen=True)
class TemplateChange:
    at: float
    image: str | None


class ImageScriptedApi:
    """`health[image]`: ok, degraded, error or an HTTP status such as "500" (default ok);
    `login[image]`: the status code of POST /auth/login (default 200)."""

    def __init__(self, namespace: str, deployment: str = "orion-api") -> None:
        self.namespace, self.deployment = namespace, deployment
        self.port = free_port()
        self.health: dict[str, str] = {}
        self.login: dict[str, int] = {}
        self.image: str | None = None
        self.probes: list[Probe] = []
        self.changes: list[TemplateChange] = []
        self.logins: list[str | None] = []
        self._loop = asyncio.new_event_loop()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def answers(self, image: str) -> str:
        return self.health.get(image, "ok")

    async def _health(self, _: web.Request) -> web.Response:
        image = self.image
        mode = self.answers(image) if image else "ok"
        self.probes.append(Probe(time.monotonic(), image, mode))
        if mode in BODIES:
            status, body = BODIES[mode]
            return web.Response(
                status=status, text=json.dumps(body), content_type="application/json"
            )
        return web.Response(status=int(mode), text="Internal Server Error")

    async def _login(self, request: web.Request) -> web.Response:
        await request.read()
        self.logins.append(self.image)
        status = self.login.get(self.image or "", 200)
        return web.json_response({"ok": status < 400}, status=status)

    def _watch(self) -> None:
        """Follow the Deployment's pod template image, as fast as the API server tells us."""
        client = Client()
        while not self._stop.is_set():
            try:
                for _, obj in client.watch(
                    Deployment,
                    namespace=self.namespace,
                    fields={"metadata.name": self.deployment},
                    server_timeout=5,
                ):
                    containers = obj.spec.template.spec.containers  # type: ignore[union-attr]
                    image = containers[0].image if containers else None
                    if image != self.image:
                        self.image = image
                        self.changes.append(TemplateChange(time.monotonic(), image))
                    if self._stop.is_set():
                        return
            except Exception:  # the watch ends now and then; start it again
                time.sleep(0.2)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/auth/login", self._login)
        runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    @contextmanager
    def running(self) -> Iterator[ImageScriptedApi]:
        ready = threading.Event()
        server = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        watcher = threading.Thread(target=self._watch, daemon=True)
        server.start()
        watcher.start()
        ready.wait(10)
        try:
            yield self
        finally:
            self._stop.set()
            self._loop.call_soon_threadsafe(self._loop.stop)
            server.join(10)
            watcher.join(10)
