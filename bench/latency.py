"""Latency of one Tenant: from the create call returning to a watch seeing it Ready.

Usage: KUBECONFIG=... .venv/bin/python bench/latency.py [--runs 200]

Sequential: each run creates a new Tenant (`provisioning: observe`, a row already in a local
PostgreSQL), waits for it to be Ready, and goes on to the next one. The floor, measured in the
same run on the same control plane: a trivial kopf operator (BARE_KOPF_OPERATOR below) whose only
handler sets the Ready condition of a created Tenant, with kopf's default settings. Prints p50
and p99 of both and the ratios. The CRDs must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from lightkube import AsyncClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tenant_load import (
    ORION_OPERATOR,
    BenchDatabase,
    ReadyWatch,
    create_namespace,
    create_tenants,
    delete_namespace,
    kopf_script_argv,
    operator_running,
)

BARE_KOPF_OPERATOR = """
import kopf

@kopf.on.create("orion.io", "v1alpha1", "tenants")
async def ready(body, patch, **_):
    generation = body.metadata.get("generation")
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [
        {"type": "Ready", "status": "True", "reason": "Synced", "message": "bare kopf",
         "observedGeneration": generation}
    ]
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latencies(argv: list[str], name: str, runs: int, database_url: str) -> list[float]:
    """Seconds from each create returning to the Tenant seen Ready, one Tenant at a time."""
    namespace = f"orion-bench-latency-{name}"
    client = AsyncClient(field_manager="orion-bench")
    try:
        await create_namespace(client, namespace, database_url)
        found = []
        with operator_running(argv, namespace, name):
            async with ReadyWatch(client, namespace).running() as watch:
                for i in range(runs):
                    tenant = f"l{i:05d}"
                    await create_tenants(client, namespace, [tenant], concurrency=1)
                    created = time.monotonic()
                    ready = await watch.wait_for({tenant}, timeout_seconds=120)
                    found.append(ready - created)
            # While the operator still runs, so any finalizer it added is released.
            await delete_namespace(client, namespace)
        return found
    finally:
        await delete_namespace(client, namespace)
        await client.close()


def line(label: str, values: list[float]) -> str:
    return (
        f"{label}: p50 {percentile(values, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(values, 0.99) * 1000:.0f} ms over {len(values)} Tenants"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    database = BenchDatabase.start()
    try:
        database.add_tenant_rows(f"l{i:05d}" for i in range(args.runs))
        floor = asyncio.run(
            latencies(kopf_script_argv(BARE_KOPF_OPERATOR), "floor", args.runs, database.url)
        )
        ours = asyncio.run(latencies(ORION_OPERATOR, "orion", args.runs, database.url))
    finally:
        database.stop()
    print("apply → Ready, one Tenant at a time")
    print("  " + line("bare kopf handler (floor)", floor))
    print("  " + line("orion-operator           ", ours))
    print(
        f"  ratio orion ÷ floor: p50 {percentile(ours, 0.5) / percentile(floor, 0.5):.2f}, "
        f"p99 {percentile(ours, 0.99) / percentile(floor, 0.99):.2f}"
    )


if __name__ == "__main__":
    main()
