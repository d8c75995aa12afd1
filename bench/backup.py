"""Backup throughput: the operator's backup run ÷ bare `pg_dump -Fc -f /dev/null`, same database.

Usage: .venv/bin/python bench/backup.py [--scale 64] [--wide-rows 500000] [--runs 5]

Builds a database with `pgbench -i -s SCALE` plus a wide table (scale 64 and 500,000 wide rows is
about 1.4 GB), then times, in the same run and interleaved: bare pg_dump to /dev/null (the
baseline), and the operator's own backup code (`backup.run.run_backup`, what the inline executor
and a backup Job run) to a volume and to S3 (moto's server on loopback). Each of ours runs in a
child process so its peak RSS is its own. The same is then measured on a database an eighth of
the size, to show that peak memory does not grow with the database. Prints medians, the ratios to
the baseline, the CPU a run adds to pg_dump's own (steadier than wall time on a shared machine:
the database server's CPU, the same in both, is left out), and the children's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SMALLER = 8  # the second database is this many times smaller


def child(destination: str, url: str, target: str) -> None:
    """Run one backup and print its duration and this process's peak RSS as JSON."""
    from orion_operator.backup.archive import inflate_library
    from orion_operator.backup.run import BackupRequest, run_backup
    from orion_operator.backup.storage import S3Location, VolumeLocation

    location: VolumeLocation | S3Location
    if destination == "volume":
        location = VolumeLocation(Path(target))
    else:
        location = S3Location(
            bucket="bench",
            endpoint_url=target,
            region="us-east-1",
            access_key_id="bench",
            secret_access_key="bench-secret",
        )
    request = BackupRequest(
        source="bench/backup",
        database_url=url,
        location=location,
        key=f"platform/bench-{time.time_ns()}.dump",
        kind="platform",
        min_free_percent=0,
    )
    cpu_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = asyncio.run(run_backup(request))
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    hwm = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "peak_rss_mib": int(hwm.split()[1]) / 1024,
                "size": result.artifact.size_bytes,
                "inflate": inflate_library(),
            }
        )
    )


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall and CPU seconds of one run of `argv` (its CPU: it is our only child meanwhile)."""
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")
    return {
        "seconds": time.monotonic() - started,
        "cpu_seconds": cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before,
    }


def ours(destination: str, url: str, target: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", destination, url, target],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"backup to {destination} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class Measured:
    label: str
    database_size: str
    baseline: list[dict[str, float]] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def peak_rss_mib(self, destination: str) -> float:
        return max(run["peak_rss_mib"] for run in self.runs[destination])

    def report(self) -> None:
        base = statistics.median(run["seconds"] for run in self.baseline)
        base_cpu = statistics.median(run["cpu_seconds"] for run in self.baseline)
        print(f"{self.label} database: {self.database_size}")
        print(
            f"  bare pg_dump -Fc -f /dev/null: median {base:.2f} s over {len(self.baseline)} runs "
            f"(pg_dump's CPU {base_cpu:.2f} s)"
        )
        for destination, runs in self.runs.items():
            seconds = statistics.median(run["seconds"] for run in runs)
            # CPU is steadier than wall time on a shared machine: what the run adds to pg_dump's.
            extra_cpu = statistics.median(run["cpu_seconds"] for run in runs) - base_cpu
            print(
                f"  operator backup to {destination}: median {seconds:.2f} s, "
                f"ratio {seconds / base:.2f}, CPU +{extra_cpu:.2f} s, "
                f"peak RSS {self.peak_rss_mib(destination):.0f} MiB, "
                f"artifact {runs[0]['size'] / 2**20:.0f} MiB"
            )


def measure(
    server: Any, label: str, scale: int, wide_rows: int, runs: int, endpoint: str
) -> Measured:
    name = f"bench_{label}"
    password = secrets.token_hex(12)
    server.create_role(name, password)
    server.create_database(name, owner=name)
    url = server.url_for(name, name, password)
    subprocess.run(
        [str(server.bindir / "pgbench"), "-i", "-q", "-s", str(scale), url],
        check=True,
        capture_output=True,
    )
    server.psql(
        "CREATE TABLE wide AS SELECT g AS id, md5(g::text) || repeat('x', 900) AS payload "
        f"FROM generate_series(1, {wide_rows}) g",
        database=name,
        user=name,
    )
    size = server.psql(f"SELECT pg_size_pretty(pg_database_size('{name}'))").strip()
    measured = Measured(label, f"{size} (pgbench -s {scale} + {wide_rows} wide rows)")

    env = {**os.environ, "PGPASSWORD": password}
    bare_url = url.replace(f":{password}@", "@")
    pg_dump = str(server.bindir / "pg_dump")
    with tempfile.TemporaryDirectory(prefix="orion-bench-") as directory:
        for _ in range(runs):
            measured.baseline.append(
                timed([pg_dump, "-Fc", "--no-sync", "-f", "/dev/null", bare_url], env)
            )
            for destination, target in (("volume", directory), ("S3 (moto)", endpoint)):
                run = ours("volume" if destination == "volume" else "s3", url, target)
                measured.runs.setdefault(destination, []).append(run)
            for leftover in Path(directory).rglob("*.dump*"):
                leftover.unlink()
    server.psql(f'DROP DATABASE "{name}"')
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=64, help="pgbench scale (64: ~1 GB)")
    parser.add_argument("--wide-rows", type=int, default=500_000, help="rows of ~1 KB text")
    parser.add_argument("--runs", type=int, default=5, help="runs of each, interleaved")
    parser.add_argument(
        "--child", nargs=3, metavar=("DEST", "URL", "TARGET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    import boto3
    from moto.server import ThreadedMotoServer

    from orion_operator.backup.archive import inflate_library
    from orion_operator.backup.storage import DEFAULT_PART_SIZE_BYTES
    from orion_operator.devenv.postgres import LocalPostgres, free_port

    print(
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; "
        f"archives verified in-process with {inflate_library()}"
    )
    server = LocalPostgres().start()
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
        ).create_bucket(Bucket="bench")
        sizes = (
            ("large", args.scale, args.wide_rows),
            ("small", max(1, args.scale // SMALLER), args.wide_rows // SMALLER),
        )
        results = []
        for label, scale, wide_rows in sizes:
            results.append(measure(server, label, scale, wide_rows, args.runs, endpoint))
            results[-1].report()
        large, small = results
        for destination in large.runs:
            print(
                f"peak RSS to {destination}: {small.peak_rss_mib(destination):.0f} MiB small, "
                f"{large.peak_rss_mib(destination):.0f} MiB large"
            )
        print(
            f"(the S3 writer holds at most two {DEFAULT_PART_SIZE_BYTES // 2**20} MiB parts; an "
            "artifact smaller than one part is a single PUT)"
        )
    finally:
        moto.stop()
        server.stop()


if __name__ == "__main__":
    main()
