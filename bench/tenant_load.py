"""Shared parts of the Tenant benches: a database with tenant rows, the operator, Ready watches.

Not a bench itself: bench/reconcile.py and bench/latency.py import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import GenericNamespacedResource
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from orion_operator.devenv.postgres import LocalPostgres, free_port  # noqa: E402
from orion_operator.kube.resources import TenantResource  # noqa: E402

SCHEMA = REPO / "tests" / "fixtures" / "orion_schema.sql"
APP_ROLE = "orion"


@dataclass
class BenchDatabase:
    """A PostgreSQL with the Orion schema; every Tenant of a bench points at this one database."""

    server: LocalPostgres
    url: str

    @classmethod
    def start(cls) -> BenchDatabase:
        server = LocalPostgres().start()
        password = secrets.token_hex(12)
        server.create_role(APP_ROLE, password)
        server.create_database("orion", owner=APP_ROLE)
        server.psql_file(SCHEMA, "orion", APP_ROLE)
        return cls(server, server.url_for("orion", APP_ROLE, password))

    def add_tenant_rows(self, tenant_ids: Iterable[str]) -> None:
        """The rows `observe` expects the application to have created."""
        with psycopg.connect(self.url) as conn, conn.cursor() as cursor:
            cursor.executemany(
                'INSERT INTO "Tenant" ("id", "name") VALUES (%s, %s)',
                [(tenant_id, tenant_id) for tenant_id in tenant_ids],
            )

    def stop(self) -> None:
        self.server.stop()


def tenant_manifest(name: str) -> dict[str, Any]:
    # observe: a real reconcile (Secret read, tenant row read, row counts, integrity check)
    # without writing to the application's table.
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"provisioning": "observe"},
    }


def is_ready(obj: GenericNamespacedResource) -> bool:
    status = obj.status or {}
    generation = obj.metadata.generation if obj.metadata else None
    return any(
        c.get("type") == "Ready"
        and c.get("status") == "True"
        and c.get("observedGeneration") in (None, generation)
        for c in status.get("conditions") or []
    )


def ready_status(generation: int | None) -> dict[str, Any]:
    """What the operator writes for a synced Tenant, for the plain-client baseline."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "observedGeneration": generation,
            "phase": "Ready",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Synced",
                    "message": "set directly by the baseline client",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                }
            ],
        }
    }


async def bounded(concurrency: int, jobs: Iterable[Any]) -> list[Any]:
    """Await the coroutines in `jobs`, at most `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


async def create_namespace(client: AsyncClient, name: str, database_url: str | None) -> None:
    await delete_namespace(client, name)
    await client.create(Namespace.from_dict({"metadata": {"name": name}}))
    if database_url is not None:
        secret = {
            "metadata": {"name": "orion-database", "namespace": name},
            "stringData": {"DATABASE_URL": database_url},
        }
        await client.create(Secret.from_dict(secret))


async def delete_namespace(client: AsyncClient, name: str, timeout_seconds: float = 600) -> None:
    """Delete and wait until it is gone (an earlier run's may still be going away)."""
    with contextlib.suppress(ApiError):
        await client.delete(Namespace, name)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            await client.get(Namespace, name)
        except ApiError as error:
            if error.status.code == 404:
                return
            raise
        await asyncio.sleep(1)
    raise RuntimeError(f"namespace {name} still there after {timeout_seconds:.0f} s")


async def create_tenants(
    client: AsyncClient, namespace: str, names: list[str], concurrency: int
) -> None:
    await bounded(
        concurrency,
        (
            client.create(TenantResource.from_dict(tenant_manifest(name)), namespace=namespace)
            for name in names
        ),
    )


async def patch_ready(client: AsyncClient, namespace: str, name: str) -> None:
    await client.patch(
        TenantResource.Status,
        name,
        ready_status(1),
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


class ReadyWatch:
    """Records when each Tenant of a namespace is first seen Ready, from one watch."""

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.ready_at: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        resource_version: str | None = None
        while True:
            try:
                async for _, obj in self.client.watch(
                    TenantResource, namespace=self.namespace, resource_version=resource_version
                ):
                    assert obj.metadata is not None and obj.metadata.name is not None
                    resource_version = obj.metadata.resourceVersion
                    if obj.metadata.name not in self.ready_at and is_ready(obj):
                        self.ready_at[obj.metadata.name] = time.monotonic()
                        self.changed.set()
            except ApiError as error:
                if error.status.code != 410:
                    raise
                resource_version = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ReadyWatch]:
        self._task = asyncio.create_task(self._run())
        # The watch is open once its first request is sent; a moment is enough on a local server.
        await asyncio.sleep(0.5)
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, names: set[str] | int, timeout_seconds: float) -> float:
        """Until these names (or this many Tenants) are Ready; the time the last one was seen."""
        deadline = time.monotonic() + timeout_seconds

        def done() -> bool:
            if isinstance(names, int):
                return len(self.ready_at) >= names
            return names <= self.ready_at.keys()

        while not done():
            if self._task is not None and self._task.done():
                self._task.result()
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ready = len(self.ready_at)
                raise TimeoutError(f"{ready} Tenants Ready after {timeout_seconds:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        if isinstance(names, int):
            return max(self.ready_at.values())
        return max(self.ready_at[name] for name in names)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"operator exited with {process.returncode}; log: {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"operator not healthy after {timeout:.0f} s; log: {log}")


@contextlib.contextmanager
def operator_running(argv: list[str], namespace: str, name: str) -> Iterator[OperatorProcess]:
    """`argv` (a kopf operator) run --standalone for `namespace`, once its liveness answers."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"orion-bench-{name}-{namespace}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *argv,
                "--standalone",
                "-n",
                namespace,
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ORION_METRICS_PORT": "0"},
            cwd=REPO,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", process, log_path, timeout=120)
        yield OperatorProcess(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


ORION_OPERATOR = [sys.executable, "-m", "orion_operator", "run"]


def kopf_script_argv(source: str) -> list[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(source)
    return [sys.executable, "-m", "kopf", "run", script.name]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
