"""The faults the chaos tests inject: the operator killed, the control plane restarted,
PostgreSQL and Redis stopped; and the demo API, whose /health checks the real services."""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from orion_operator.demo.api import build_app
from orion_operator.devenv.kubectl import kubectl
from orion_operator.devenv.postgres import LocalPostgres, free_port
from tests.integration.conftest import TEST_CLUSTER, wait_for
from tests.integration.test_backup_faults import RestartableOperator


@dataclass
class KillPoints:
    """Where, in seconds after the work was asked for, the operator gets SIGKILL."""

    rng: random.Random
    log: list[str] = field(default_factory=list)

    def kill_after(
        self,
        operator: RestartableOperator,
        low: float,
        high: float,
        what: str,
        observe: Callable[[], str] | None = None,
    ) -> None:
        """SIGKILL after a random delay; `observe` says what state the work was caught in."""
        delay = self.rng.uniform(low, high)
        time.sleep(delay)
        operator.kill()
        caught = f" while {observe()}" if observe is not None else ""
        self.log.append(f"{what}: killed after {delay:.2f}s{caught}")
        print(f"chaos: {what}: operator killed (SIGKILL) after {delay:.2f}s{caught}")


class ControlPlane:
    """This test run's own kwokctl cluster (ORION_TEST_CLUSTER), stopped and started whole:
    etcd, kube-apiserver, controller-manager, scheduler and kwok, as after a power cut."""

    def __init__(self, cluster: str = TEST_CLUSTER) -> None:
        cache = Path(os.environ.get("ORION_CACHE_DIR", Path.home() / ".cache" / "orion-operator"))
        self.workdir = cache / "kwok"
        self.cluster = cluster
        # scripts/cluster records which binaries built the cluster; kwokctl needs the same.
        build_key = (self.workdir / "clusters" / cluster / "orion-build-key").read_text().strip()
        self.bin_dir = cache / "bin" / build_key
        versions = dict(part.split("-", 1) for part in build_key.split("_"))
        self.env = {
            **os.environ,
            "KWOK_WORKDIR": str(self.workdir),
            "KWOK_KUBE_VERSION": versions["k8s"],
            "KWOK_ETCD_VERSION": versions["etcd"].removeprefix("v"),
            "KWOK_RUNTIME": "binary",
            "KWOK_KUBE_BINARY_PREFIX": str(self.bin_dir),
            "KWOK_ETCD_BINARY_PREFIX": str(self.bin_dir),
            "KWOK_BINARY_PREFIX": str(self.bin_dir),
        }

    def _kwokctl(self, *args: str) -> None:
        subprocess.run(
            [
                str(self.bin_dir / "kwokctl"),
                "--name",
                self.cluster,
                "--config",
                str(self.workdir / "orion-kwokctl.yaml"),
                *args,
            ],
            check=True,
            env=self.env,
            capture_output=True,
        )

    def stop(self) -> None:
        self._kwokctl("stop", "cluster")
        print(f"chaos: control plane {self.cluster} stopped")

    def start(self) -> None:
        self._kwokctl("start", "cluster")
        wait_for(
            lambda: kubectl("get", "--raw", "/readyz", check=False).stdout.strip() == "ok",
            timeout=120,
            what="the API server to be ready again",
        )
        print(f"chaos: control plane {self.cluster} started")

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Down inside the block; up again after it, even when the block fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()


class StoppablePostgres:
    """Stops a LocalPostgres as a crash would (immediate mode) and starts it again on the same
    data directory and options, which `LocalPostgres.stop()` would delete."""

    def __init__(self, server: LocalPostgres) -> None:
        self.server = server
        self._options = ""

    def _pg_ctl(self, *args: str) -> None:
        argv = [str(self.server.bindir / "pg_ctl"), "-D", str(self.server.datadir), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True)

    def stop(self) -> None:
        # postmaster.opts holds the command line the server runs with: keep all but -D.
        recorded = shlex.split((self.server.datadir / "postmaster.opts").read_text())[1:]
        data_dir_at = recorded.index("-D")
        self._options = shlex.join(recorded[:data_dir_at] + recorded[data_dir_at + 2 :])
        self._pg_ctl("-m", "immediate", "stop")
        print("chaos: PostgreSQL stopped (immediate)")

    def start(self) -> None:
        log = self.server.datadir.parent / "server.log"
        self._pg_ctl("-o", self._options, "-l", str(log), "-w", "-t", "60", "start")
        print("chaos: PostgreSQL started")


class DemoApi:
    """The demo API (`orion_operator.demo.api`) on its own thread: /health checks the real
    PostgreSQL and Redis on every request."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._app = build_app(database_url, redis_url, queues=(), check_timeout_seconds=1)
        self._runner = web.AppRunner(self._app, shutdown_timeout=1, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def start(self) -> DemoApi:
        self._thread.start()

        async def serve() -> None:
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
