"""Probe fan-out: N ApiDeployments probed every 10 s by one operator, against local servers.

Usage: KUBECONFIG=... .venv/bin/python bench/probe_fanout.py [--counts 50 500] [--seconds 180]

For each N it prints the p50/p99 delay between a probe's scheduled time and its arrival at the
health server, the operator's CPU (share of one core) and peak RSS. The baseline, measured in the
same run, is a bare asyncio loop probing the same N URLs on the same schedule with no Kubernetes
in between; the ratio is operator p99 ÷ baseline p99. The CRDs must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.fixtures.health_bodies import OK  # noqa: E402

INTERVAL_SECONDS = 10
OK_BODY = json.dumps(OK)


class ArrivalRecorder:
    """Answers /health/<i> with the runbook's ok body and notes when each probe arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = defaultdict(list)

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals[request.match_info["target"]].append(time.monotonic())
        return web.Response(text=OK_BODY, content_type="application/json")

    def delays(self, settle: int = 1) -> list[float]:
        """Lateness of every probe after the first `settle` ones, against its own schedule."""
        found = []
        for times in self.arrivals.values():
            if len(times) <= settle:
                continue
            origin = times[settle - 1]
            for k, arrived in enumerate(times[settle:], start=1):
                found.append(max(0.0, arrived - (origin + k * INTERVAL_SECONDS)))
        return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def baseline(urls: list[str], seconds: float) -> None:
    """The floor: one task per URL, sleeping to the next scheduled time, then a GET."""
    async with aiohttp.ClientSession() as session:

        async def loop(url: str) -> None:
            next_at = time.monotonic()
            deadline = next_at + seconds
            while next_at < deadline:
                async with session.get(url) as response:
                    await response.read()
                next_at += INTERVAL_SECONDS
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.gather(*(loop(url) for url in urls))


def kubectl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["kubectl", *args], input=stdin, text=True, check=True, capture_output=True)


def manifests(count: int, port: int) -> str:
    items = [
        {
            "apiVersion": "orion.io/v1alpha1",
            "kind": "ApiDeployment",
            "metadata": {"name": f"api-{i}"},
            "spec": {
                # No pods: only the probes are measured (kwok would otherwise fake 2 per object).
                "image": "ghcr.io/example/orion-api:1.0.0",
                "replicas": 0,
                "minReplicas": 0,
                "healthCheck": {
                    "url": f"http://127.0.0.1:{port}/health/{i}",
                    "intervalSeconds": INTERVAL_SECONDS,
                },
                "dependencies": {"queues": []},
            },
        }
        for i in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(count: int, seconds: float) -> None:
    recorder = ArrivalRecorder()
    app = web.Application()
    app.router.add_get("/health/{target}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    urls = [f"http://127.0.0.1:{port}/health/base-{i}" for i in range(count)]
    await baseline(urls, seconds=min(seconds, 60))
    base = [d for d in recorder.delays() if d is not None]
    recorder.arrivals.clear()

    namespace = f"orion-bench-fanout-{count}"
    await asyncio.to_thread(kubectl, "create", "namespace", namespace)
    operator = subprocess.Popen(  # noqa: ASYNC220  (returns at once; nothing else runs yet)
        [sys.executable, "-m", "orion_operator", "run", "--standalone", "-n", namespace],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ORION_METRICS_PORT": "0"},
    )
    try:
        await asyncio.sleep(5)
        await asyncio.to_thread(
            kubectl, "apply", "-n", namespace, "-f", "-", stdin=manifests(count, port)
        )
        cpu_start, started = cpu_seconds(operator.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_share = (cpu_seconds(operator.pid) - cpu_start) / (time.monotonic() - started)
        rss = peak_rss_mib(operator.pid)
    finally:
        # While the operator still runs, so it can release its finalizers.
        await asyncio.to_thread(
            kubectl, "delete", "apid", "--all", "-n", namespace, "--timeout=120s"
        )
        operator.terminate()
        operator.wait(timeout=30)
        await asyncio.to_thread(kubectl, "delete", "namespace", namespace, "--wait=false")
        await runner.cleanup()

    ours = recorder.delays()
    probed = sum(1 for target in recorder.arrivals if not target.startswith("base-"))
    print(f"N={count}: {probed}/{count} ApiDeployments probed, {len(ours)} scheduled probes")
    print(
        f"  baseline (bare asyncio): delay p50 {percentile(base, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(base, 0.99) * 1000:.1f} ms"
    )
    print(
        f"  orion-operator:          delay p50 {percentile(ours, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(ours, 0.99) * 1000:.1f} ms, CPU {cpu_share * 100:.1f}% of a core, "
        f"peak RSS {rss:.0f} MiB"
    )
    print(
        f"  ratio p99 operator ÷ baseline: "
        f"{percentile(ours, 0.99) / max(percentile(base, 0.99), 1e-4):.1f}; "
        f"median delay {statistics.median(ours) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--seconds", type=float, default=180)
    args = parser.parse_args()
    for count in args.counts:
        asyncio.run(measure(count, args.seconds))


if __name__ == "__main__":
    main()
