"""What kopf itself holds per object: a bare kopf operator's RSS with N Tenants, with and
without one per-object timer like the operator's `tenant_resync`.

Usage: KUBECONFIG=... .venv/bin/python bench/kopf_memory.py [--counts 2000]

For each N and each variant, a bare kopf operator (kopf's defaults, one create handler that
sets Ready) watches its own namespace; the bench creates N Tenants, waits until all are Ready,
and prints the operator's RSS before and its peak after, and the difference per Tenant. The
timer of the second variant never fires during the run (a long initial delay): what is measured
is the cost of having it. The CRDs must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from lightkube import AsyncClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import BARE_KOPF_OPERATOR
from tenant_load import (
    ReadyWatch,
    create_namespace,
    create_tenants,
    delete_namespace,
    kopf_script_argv,
    operator_running,
    peak_rss_mib,
)

WITH_TIMER = (
    BARE_KOPF_OPERATOR
    + """
@kopf.timer("orion.io", "v1alpha1", "tenants", interval=3600.0, initial_delay=3600.0, idle=10.0)
async def resync(**_):
    pass
"""
)


async def rss_with_tenants(source: str, variant: str, count: int) -> tuple[float, float]:
    """The operator's RSS before the Tenants, and its peak once all are Ready."""
    client = AsyncClient(field_manager="orion-bench")
    namespace = f"orion-bench-kopf-memory-{variant}"
    try:
        await create_namespace(client, namespace, None)
        with operator_running(kopf_script_argv(source), namespace, variant) as operator:
            try:
                before = peak_rss_mib(operator.pid)
                async with ReadyWatch(client, namespace).running() as watch:
                    names = [f"m{i:05d}" for i in range(count)]
                    await create_tenants(client, namespace, names, concurrency=16)
                    await watch.wait_for(count, timeout_seconds=max(600, count / 5))
                return before, peak_rss_mib(operator.pid)
            finally:
                # While the operator still runs: the timer's finalizer is released.
                await delete_namespace(client, namespace)
    finally:
        await delete_namespace(client, namespace)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="2000", help="comma-separated Tenant counts")
    args = parser.parse_args()
    for count in (int(c) for c in args.counts.split(",")):
        for variant, source in (("no-timer", BARE_KOPF_OPERATOR), ("timer", WITH_TIMER)):
            before, peak = asyncio.run(rss_with_tenants(source, variant, count))
            print(
                f"N={count} bare kopf, {variant:8}: RSS {before:.0f} MiB idle, "
                f"peak {peak:.0f} MiB, {(peak - before) * 1024 / count:.0f} KiB per Tenant"
            )


if __name__ == "__main__":
    main()
