"""Reconcile throughput: N Tenants applied at once, until all are Ready, against a plain client.

Usage: KUBECONFIG=... .venv/bin/python bench/reconcile.py [--counts 1000,10000] [--runs 1]
       [--concurrency 16] [--profile DIR]

On a cluster with the CRDs installed (`scripts/cluster up`, then `kubectl apply -f crds/`), with
one local PostgreSQL holding the Orion schema and a row for every tenant: all Tenants use
`provisioning: observe` and the same database Secret, so each reconcile is a real one (Secret
read, tenant row read, row counts, integrity check, status patch) without writes to the
application's table. For each N it prints:

  - the baseline, measured in the same run: a plain async lightkube client patching the Ready
    status of N existing Tenants directly, `--concurrency` requests at a time;
  - the operator (its own process, watching only the bench's namespace): Tenants created by the
    bench with the same concurrency, the time from the first create until a watch has seen all
    of them Ready, the rate, the operator's CPU seconds over that time and its peak RSS;
  - the ratio operator rate ÷ baseline rate.

With --profile DIR, py-spy samples the operator while it works and writes collapsed stacks
(DIR/reconcile-N.txt), one line per stack with its sample count.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lightkube import AsyncClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tenant_load import (
    ORION_OPERATOR,
    BenchDatabase,
    ReadyWatch,
    bounded,
    cpu_seconds,
    create_namespace,
    create_tenants,
    delete_namespace,
    operator_running,
    patch_ready,
    peak_rss_mib,
)


@dataclass(frozen=True)
class OperatorRun:
    seconds: float
    create_seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    def rate(self, count: int) -> float:
        return count / self.seconds


async def baseline_rate(
    client: AsyncClient, count: int, concurrency: int, database_url: str
) -> float:
    """Tenants per second a plain client sets Ready on, with no operator running."""
    namespace = f"orion-bench-baseline-{count}"
    await create_namespace(client, namespace, database_url)
    names = [f"t{i:05d}" for i in range(count)]
    try:
        await create_tenants(client, namespace, names, concurrency)
        started = time.monotonic()
        await bounded(concurrency, (patch_ready(client, namespace, name) for name in names))
        return count / (time.monotonic() - started)
    finally:
        await delete_namespace(client, namespace)


def start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            *(str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--nonblocking"),
            *("--rate", "50", "--output", str(path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def operator_run(
    client: AsyncClient, count: int, concurrency: int, database_url: str, profile: Path | None
) -> OperatorRun:
    namespace = f"orion-bench-reconcile-{count}"
    await create_namespace(client, namespace, database_url)
    names = [f"t{i:05d}" for i in range(count)]
    try:
        with operator_running(ORION_OPERATOR, namespace, "reconcile") as operator:
            profiler = None
            if profile is not None:
                profiler = start_profiler(operator.pid, profile / f"reconcile-{count}.txt")
            try:
                async with ReadyWatch(client, namespace).running() as watch:
                    cpu_start, started = cpu_seconds(operator.pid), time.monotonic()
                    await create_tenants(client, namespace, names, concurrency)
                    created = time.monotonic()
                    last_ready = await watch.wait_for(count, timeout_seconds=max(600, count / 5))
                    cpu = cpu_seconds(operator.pid) - cpu_start
                rss = peak_rss_mib(operator.pid)
            finally:
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(timeout=60)
                # While the operator still runs: it releases the finalizer kopf puts on
                # Tenants for their resync timer.
                await delete_namespace(client, namespace)
    finally:
        await delete_namespace(client, namespace)
    return OperatorRun(last_ready - started, created - started, cpu, rss)


async def measure(
    count: int, runs: int, concurrency: int, database: BenchDatabase, profile: Path | None
) -> None:
    client = AsyncClient(field_manager="orion-bench")
    try:
        baselines, ours = [], []
        for _ in range(runs):
            baselines.append(await baseline_rate(client, count, concurrency, database.url))
            ours.append(await operator_run(client, count, concurrency, database.url, profile))
    finally:
        await client.close()
    base = statistics.median(baselines)
    seconds = statistics.median(r.seconds for r in ours)
    rate = count / seconds
    print(f"N={count} Tenants (provisioning observe, one database), {runs} run(s)")
    print(
        f"  baseline (plain lightkube client, {concurrency} at a time): "
        f"median {base:.0f} status patches/s"
    )
    for i, run in enumerate(ours, start=1):
        print(
            f"  run {i}: all Ready in {run.seconds:.1f} s ({run.rate(count):.0f} Tenants/s; "
            f"creates took {run.create_seconds:.1f} s), operator CPU {run.cpu_seconds:.1f} s, "
            f"peak RSS {run.peak_rss_mib:.0f} MiB"
        )
    print(
        f"  median: all Ready in {seconds:.1f} s, {rate:.0f} Tenants/s, "
        f"CPU {statistics.median(r.cpu_seconds for r in ours):.1f} s, "
        f"peak RSS {max(r.peak_rss_mib for r in ours):.0f} MiB (max)"
    )
    print(f"  ratio operator rate ÷ baseline rate: {rate / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="1000,10000", help="comma-separated Tenant counts")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", type=Path, help="write py-spy's collapsed stacks here")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    database = BenchDatabase.start()
    try:
        database.add_tenant_rows(f"t{i:05d}" for i in range(max(counts)))
        for count in counts:
            asyncio.run(measure(count, args.runs, args.concurrency, database, args.profile))
    finally:
        database.stop()


if __name__ == "__main__":
    main()
