"""Idle memory of the operator against a bare kopf operator measured in the same run.

Usage: KUBECONFIG=... .venv/bin/python bench/idle_rss.py [--seconds 20] [--runs 3]
Prints each process's resident set size after it has idled, and the ratio ours ÷ bare kopf.
The CRDs must be installed (scripts/run or the test suite does it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_KOPF_OPERATOR = """
import kopf

@kopf.on.create("orion.io", "v1alpha1", "tenants")
async def created(**_):
    pass
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def idle_rss(argv: list[str], seconds: float) -> float:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)
        if process.poll() is not None:
            raise RuntimeError(f"{argv} exited with {process.returncode}")
        return rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--namespace", default="orion-bench-idle")
    args = parser.parse_args()

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as bare:
        bare.write(BARE_KOPF_OPERATOR)
    namespace = ["-n", args.namespace]
    bare_argv = [sys.executable, "-m", "kopf", "run", "--standalone", *namespace, bare.name]
    ours_argv = [sys.executable, "-m", "orion_operator", "run", "--standalone", *namespace]

    baseline, ours = [], []
    for _ in range(args.runs):
        baseline.append(idle_rss(bare_argv, args.seconds))
        ours.append(idle_rss(ours_argv, args.seconds))
    base_median, ours_median = statistics.median(baseline), statistics.median(ours)
    print(f"bare kopf operator idle RSS: median {base_median:.1f} MiB over {args.runs} runs")
    print(f"orion-operator idle RSS:     median {ours_median:.1f} MiB over {args.runs} runs")
    print(f"ratio orion ÷ bare kopf:     {ours_median / base_median:.2f}")


if __name__ == "__main__":
    main()
