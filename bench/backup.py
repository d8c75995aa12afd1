"""Backup throughput: the operator's backup run ÷ bare `pg_dump -Fc -f /dev/null`, same database.

Usage: .venv/bin/python bench/backup.py [--scale 64] [--wide-rows 500000] [--runs 3]

Builds a database with `pgbench -i -s SCALE` plus a wide table (scale 64 and 500,000 wide rows is
about 1 GB), then times, in the same run: bare pg_dump to /dev/null (the baseline), and the
operator's own backup code (`backup.run.run_backup`, what the inline executor runs) to a volume and
to S3 (moto's server on loopback). Each of ours runs in a child process so its peak RSS is its own.
Prints medians, the ratios to the baseline, and the children's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(destination: str, url: str, target: str) -> None:
    """Run one backup and print its duration and this process's peak RSS as JSON."""
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
    started = time.monotonic()
    result = asyncio.run(run_backup(request))
    elapsed = time.monotonic() - started
    hwm = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "peak_rss_mib": int(hwm.split()[1]) / 1024,
                "size": result.artifact.size_bytes,
            }
        )
    )


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")
    return time.monotonic() - started


def ours(destination: str, url: str, target: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", destination, url, target],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=64)
    parser.add_argument("--wide-rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("DEST", "URL", "TARGET"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    import boto3
    from moto.server import ThreadedMotoServer

    from orion_operator.devenv.postgres import LocalPostgres, free_port

    server = LocalPostgres().start()
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port)
    moto.start()
    try:
        password = secrets.token_hex(12)
        server.create_role("orion", password)
        server.create_database("bench", owner="orion")
        url = server.url_for("bench", "orion", password)
        print(f"building the database: pgbench -i -s {args.scale} + {args.wide_rows} wide rows")
        subprocess.run(
            [str(server.bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), url],
            check=True,
            capture_output=True,
        )
        server.psql(
            "CREATE TABLE wide AS SELECT g AS id, md5(g::text) || repeat('x', 900) AS payload "
            f"FROM generate_series(1, {args.wide_rows}) g",
            database="bench",
            user="orion",
        )
        size = server.psql("SELECT pg_size_pretty(pg_database_size('bench'))").strip()
        print(f"database size: {size}")

        endpoint = f"http://127.0.0.1:{s3_port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
        ).create_bucket(Bucket="bench")
        env = {**os.environ, "PGPASSWORD": password}
        bare_url = url.replace(f":{password}@", "@")
        pg_dump = str(server.bindir / "pg_dump")
        baseline, volume, s3 = [], [], []
        with tempfile.TemporaryDirectory(prefix="orion-bench-") as directory:
            for _ in range(args.runs):
                baseline.append(
                    timed([pg_dump, "-Fc", "--no-sync", "-f", "/dev/null", bare_url], env)
                )
                volume.append(ours("volume", url, directory))
                s3.append(ours("s3", url, endpoint))
                for leftover in Path(directory).rglob("*.dump*"):
                    leftover.unlink()
        base = statistics.median(baseline)
        print(f"bare pg_dump -Fc -f /dev/null: median {base:.2f} s over {args.runs} runs")
        for name, runs in (("volume", volume), ("S3 (moto)", s3)):
            seconds = statistics.median(r["seconds"] for r in runs)
            memory = max(r["peak_rss_mib"] for r in runs)
            print(
                f"operator backup to {name}: median {seconds:.2f} s, ratio {seconds / base:.2f}, "
                f"peak RSS {memory:.0f} MiB, artifact {runs[0]['size'] / 2**20:.0f} MiB"
            )
    finally:
        moto.stop()
        server.stop()


if __name__ == "__main__":
    main()
