"""Retention deletes: the operator's batches against one DELETE, with a writer at work.

Usage: .venv/bin/python bench/retention.py [--old 1000000] [--new 50000] [--batch-size 5000]

Seeds "AuditLog" (the Orion schema) with OLD rows two years old and NEW rows from today, then,
on two copies of that database, deletes the old rows twice in the same run:

- ours: `maintenance.run.run_maintenance` with one retention rule (older than 365d), what a
  DatabaseMaintenance runs: batches of BATCH_SIZE rows, one short transaction each;
- baseline: the runbook's `DELETE FROM "AuditLog" WHERE "createdAt" < now() - interval '1 year'`.

During each, a concurrent writer inserts new audit rows and updates random old ones (the rows
being deleted), one autocommit statement at a time, and records how long each statement took:
the longest is the longest lock wait it saw. Prints rows/s, batches, the writer's longest and
99th-percentile statement time, and the ratios ours ÷ baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "fixtures" / "orion_schema.sql"
# Deletes the old rows; returns (rows deleted, batches).
Deleter = Callable[[], tuple[int, int]]


@dataclass
class Writer:
    """Inserts and updates in a loop until stopped; keeps every statement's duration."""

    url: str
    old_ids: int
    durations: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                for statement, params in (
                    ("""INSERT INTO "AuditLog" ("action") VALUES ('bench-write')""", ()),
                    (
                        """UPDATE "AuditLog" SET "action" = 'touched' WHERE "id" = %s""",
                        (rng.randint(1, self.old_ids),),
                    ),
                ):
                    started = time.perf_counter()
                    conn.execute(statement, params)  # type: ignore[arg-type]
                    self.durations.append(time.perf_counter() - started)
                time.sleep(0.001)


@dataclass(frozen=True)
class Measured:
    seconds: float
    deleted: int
    batches: int
    longest_wait: float
    p99_wait: float
    writes: int

    @property
    def rows_per_second(self) -> float:
        return self.deleted / self.seconds


def with_writer(url: str, old: int, delete: Deleter) -> tuple[float, int, int, Writer]:
    writer = Writer(url, old)
    thread = threading.Thread(target=writer.run)
    thread.start()
    time.sleep(0.5)  # the writer is under way before the delete starts
    writer.durations.clear()
    started = time.monotonic()
    try:
        deleted, batches = delete()
    finally:
        elapsed = time.monotonic() - started
        writer.stop.set()
        thread.join()
    return elapsed, deleted, batches, writer


def measure(url: str, old: int, delete: Deleter) -> Measured:
    elapsed, deleted, batches, writer = with_writer(url, old, delete)
    durations = sorted(writer.durations)
    p99 = durations[int(0.99 * (len(durations) - 1))] if durations else 0.0
    return Measured(elapsed, deleted, batches, max(durations, default=0.0), p99, len(durations))


def ours(url: str, batch_size: int) -> tuple[int, int]:
    from orion_operator.api.maintenance import DatabaseMaintenanceSpec
    from orion_operator.maintenance.run import run_maintenance

    spec = DatabaseMaintenanceSpec.model_validate(
        {
            "schedule": "@daily",
            "tasks": {
                "retention": [
                    {
                        "table": "AuditLog",
                        "timestampColumn": "createdAt",
                        "olderThan": "365d",
                        "batchSize": batch_size,
                    }
                ]
            },
        }
    )
    now = datetime.datetime.now(datetime.UTC)
    run = asyncio.run(run_maintenance(url, spec, now))
    (task,) = run.tasks
    assert not run.failed, task.message
    (progress,) = run.retention
    return progress.deleted, progress.batches


def baseline(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(
            """DELETE FROM "AuditLog" WHERE "createdAt" < now() - interval '1 year'"""
        )
        return cursor.rowcount, 1


def seed(url: str, old: int, new: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO "AuditLog" ("action", "createdAt")
            SELECT 'old', now() - interval '2 years' - make_interval(secs => g)
            FROM generate_series(1, %s) g
            """,
            (old,),
        )
        conn.execute(
            """INSERT INTO "AuditLog" ("action") SELECT 'new' FROM generate_series(1, %s)""",
            (new,),
        )
        conn.execute('VACUUM ANALYZE "AuditLog"')


def remaining(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE "createdAt" < now() - interval '1 year'),
                      count(*) FILTER (WHERE "action" = 'new') FROM "AuditLog" """
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()

    from orion_operator.devenv.postgres import LocalPostgres

    server = LocalPostgres().start()
    try:
        password = "pw-" + secrets.token_hex(12)
        server.create_role("orion", password)
        server.create_database("bench_seed", owner="orion")
        server.psql_file(SCHEMA, "bench_seed", "orion")
        seed(server.url_for("bench_seed", "orion", password), args.old, args.new)
        results = {}
        for name in ("ours", "baseline"):
            server.create_database(f"bench_{name}", owner="orion", template="bench_seed")
            url = server.url_for(f"bench_{name}", "orion", password)
            delete = (
                functools.partial(ours, url, args.batch_size)
                if name == "ours"
                else functools.partial(baseline, url)
            )
            results[name] = measure(url, args.old, delete)
            left_old, left_new = remaining(url)
            assert left_old == 0, f"{name}: {left_old} old rows left"
            assert left_new == args.new, f"{name}: new rows touched"
    finally:
        server.stop()

    print(f"old rows {args.old:,}, new rows {args.new:,}, batch size {args.batch_size:,}")
    for name, m in results.items():
        print(
            f"{name:9s} deleted {m.deleted:,} in {m.seconds:.1f}s = {m.rows_per_second:,.0f} rows/s"
            f", {m.batches} batch(es); writer: {m.writes:,} statements, longest "
            f"{m.longest_wait * 1000:.0f} ms, p99 {m.p99_wait * 1000:.1f} ms"
        )
    a, b = results["ours"], results["baseline"]
    print(
        f"ratio ours/baseline: rows/s {a.rows_per_second / b.rows_per_second:.2f}, "
        f"writer's longest wait {a.longest_wait / b.longest_wait:.3f}"
    )


if __name__ == "__main__":
    main()
