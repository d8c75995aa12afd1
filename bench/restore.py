"""Restore throughput: the operator's restore ÷ the bare tools on the same artifact, same run.

Usage: .venv/bin/python bench/restore.py [--size 4] [--runs 3]

Builds a database with `pgbench -i -s SIZE` plus the Orion schema, where tenant "big" has
SIZE * 100,000 audit rows and some users, products and sales beside two small tenants ("Sale"
gets an index on its product key, as a schema restored tenant by tenant should). Backs it up
once with the operator's own code (a custom archive, a plain dump and big's tenant ZIP, on a
volume), then times, in the same run, each restore done bare and by the operator
(`restore.run.run_restore`, what the inline executor and the Job run):

- custom archive: bare `pg_restore --no-owner -d` (the runbook's command) into an empty database
  against ours (sha256 pass, then the streamed single-transaction pg_restore, then verification);
- plain dump: bare `psql -v ON_ERROR_STOP=1 -f` against ours;
- big's tenant ZIP into a copy of the database: a bare psql script (BEGIN, the same DELETEs,
  `\\copy` of the already unzipped CSVs, COMMIT) against ours (sha256 while copying the ZIP, the
  checks, DELETE and COPY streamed from the ZIP, one transaction).

Ours run in a child process so their peak RSS is their own. Prints medians and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "fixtures" / "orion_schema.sql"
# Children first: the order the bare script deletes in (parents first to load).
TENANT_TABLES = ("Sale", "AuditLog", "Product", "User")


def child(url: str, directory: str, key: str, overwrite: str) -> None:
    """Run one restore and print its duration and this process's peak RSS as JSON."""
    from orion_operator.backup.storage import VolumeLocation
    from orion_operator.restore.run import RestoreRequest, run_restore

    request = RestoreRequest(
        database_url=url,
        location=VolumeLocation(Path(directory)),
        key=key,
        overwrite=overwrite == "overwrite",
    )
    started = time.monotonic()
    result = asyncio.run(run_restore(request))
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
                "rows": sum(result.row_counts.values()),
            }
        )
    )


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()[-2000:]}")
    return time.monotonic() - started


def ours(url: str, directory: str, key: str, overwrite: bool = False) -> dict[str, float]:
    done = subprocess.run(
        [
            *(sys.executable, __file__, "--child", url, directory, key),
            "overwrite" if overwrite else "empty",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"restore failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(server: object, url: str, size: int) -> None:
    from orion_operator.devenv.postgres import LocalPostgres

    assert isinstance(server, LocalPostgres)
    subprocess.run(
        [str(server.bindir / "pgbench"), "-i", "-q", "-s", str(size), url],
        check=True,
        capture_output=True,
    )
    server.psql_file(SCHEMA, "bench", "orion")
    audit_rows = size * 100_000
    server.psql(
        f"""
        INSERT INTO "Tenant" (id, name, plan) VALUES
          ('big', 'Big Corp', 'enterprise'), ('small', 'Small', 'free'), ('tiny', 'Tiny', 'free');
        INSERT INTO "User" (id, email, name, "tenantId")
          SELECT 'u' || g, 'user' || g || '@orion.test', 'User ' || g,
                 (ARRAY['big', 'small', 'tiny'])[1 + g % 3]
          FROM generate_series(1, 30000) g;
        INSERT INTO "Product" (id, "tenantId", sku, name, price)
          SELECT 'p' || g, (ARRAY['big', 'small', 'tiny'])[1 + g % 3], 'SKU-' || g,
                 'Product "' || g || '", deluxe', g % 100
          FROM generate_series(1, 30000) g;
        INSERT INTO "Sale" (id, "tenantId", "productId", quantity, total)
          SELECT 's' || g, (ARRAY['big', 'small', 'tiny'])[1 + g % 3], 'p' || (1 + (g * 3) % 30000),
                 1 + g % 5, g % 500
          FROM generate_series(1, 90000) g;
        UPDATE "Sale" s SET "tenantId" = p."tenantId" FROM "Product" p WHERE p.id = s."productId";
        -- Deleting products checks Sale's foreign key: without this index each deleted product
        -- scans "Sale", and that (bare or ours) is all the bench would measure.
        CREATE INDEX "Sale_productId_idx" ON "Sale"("productId");
        INSERT INTO "AuditLog" ("tenantId", action)
          SELECT CASE WHEN g % 10 = 0 THEN 'small' ELSE 'big' END,
                 'action ' || g || ' ' || md5(g::text)
          FROM generate_series(1, {audit_rows}) g;
        ANALYZE;
        """,
        database="bench",
        user="orion",
    )


def bare_tenant_script(csv_directory: Path) -> str:
    """What the operator's tenant restore does, written by hand for psql."""
    lines = ["\\set ON_ERROR_STOP on", "BEGIN;"]
    lines += [f'DELETE FROM "{table}" WHERE "tenantId" = \'big\';' for table in TENANT_TABLES]
    for table in reversed(TENANT_TABLES):
        path = csv_directory / f"{table}.csv"
        lines.append(f"\\copy \"{table}\" FROM '{path}' WITH (FORMAT csv, HEADER true)")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--size", type=int, default=4, help="pgbench scale; tenant big gets SIZE * 100,000 rows"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("URL", "DIR", "KEY", "MODE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from orion_operator.backup.run import BackupRequest, run_backup
    from orion_operator.backup.storage import VolumeLocation
    from orion_operator.devenv.postgres import LocalPostgres

    server = LocalPostgres().start()
    try:
        password = secrets.token_hex(12)
        server.create_role("orion", password)
        server.psql('ALTER ROLE "orion" CREATEDB')
        server.create_database("bench", owner="orion")
        url = server.url_for("bench", "orion", password)
        print(f"building the database: pgbench -i -s {args.size} + the Orion schema")
        build(server, url, args.size)
        size = server.psql("SELECT pg_size_pretty(pg_database_size('bench'))").strip()
        print(f"database size: {size}")
        env = {"PGPASSWORD": password, "PATH": "/usr/bin:/bin"}
        bare_url = url.replace(f":{password}@", "@")

        def database_url(name: str) -> str:
            return url.rsplit("/", 1)[0] + f"/{name}"

        def fresh(template: str = "template1") -> str:
            name = f"r_{uuid.uuid4().hex[:8]}"
            server.create_database(name, owner="orion", template=template)
            return name

        def drop(name: str) -> None:
            server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        with tempfile.TemporaryDirectory(prefix="orion-bench-restore-") as directory:
            location = VolumeLocation(Path(directory))
            keys = {}
            for name, kind, fmt, tenant in (
                ("custom", "platform", "custom", None),
                ("plain", "platform", "plain", None),
                ("tenant", "tenant", "custom", "big"),
            ):
                suffix = {"custom": "dump", "plain": "sql", "tenant": "zip"}[name]
                keys[name] = f"bench/{name}.{suffix}"
                result = asyncio.run(
                    run_backup(
                        BackupRequest(
                            source="bench/restore",
                            database_url=url,
                            location=location,
                            key=keys[name],
                            kind=kind,
                            format=fmt,
                            tenant_id=tenant,
                            min_free_percent=0,
                        )
                    )
                )
                print(f"{name} artifact: {result.artifact.size_bytes / 2**20:.0f} MiB")
            csvs = Path(directory) / "csv"
            with zipfile.ZipFile(Path(directory) / keys["tenant"]) as archive:
                archive.extractall(csvs)
            script = Path(directory) / "tenant.psql"
            script.write_text(bare_tenant_script(csvs))

            pg_restore, psql = str(server.bindir / "pg_restore"), str(server.bindir / "psql")
            results: dict[str, tuple[list[float], list[dict[str, float]]]] = {
                name: ([], []) for name in keys
            }
            for _ in range(args.runs):
                for name in keys:
                    bare_target = fresh("bench" if name == "tenant" else "template1")
                    our_target = fresh("bench" if name == "tenant" else "template1")
                    artifact = str(Path(directory) / keys[name])
                    bare_db = bare_url.rsplit("/", 1)[0] + f"/{bare_target}"
                    if name == "custom":
                        argv = [pg_restore, "--no-owner", "-d", bare_db, artifact]
                    elif name == "plain":
                        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", artifact, bare_db]
                    else:
                        argv = [psql, "-X", "-q", "-f", str(script), bare_db]
                    results[name][0].append(timed(argv, env))
                    results[name][1].append(
                        ours(database_url(our_target), directory, keys[name], name == "tenant")
                    )
                    drop(bare_target)
                    drop(our_target)
        labels = {
            "custom": "custom archive: bare pg_restore --no-owner -d",
            "plain": "plain dump: bare psql -v ON_ERROR_STOP=1 -f",
            "tenant": 'tenant ZIP (tenant "big"): bare psql BEGIN/DELETE/\\copy/COMMIT',
        }
        for name, (bare, mine) in results.items():
            base = statistics.median(bare)
            seconds = statistics.median(r["seconds"] for r in mine)
            memory = max(r["peak_rss_mib"] for r in mine)
            rows = f", {int(mine[0]['rows'])} rows" if mine[0]["rows"] else ""
            print(f"{labels[name]}: median {base:.2f} s over {args.runs} runs")
            print(
                f"  operator restore: median {seconds:.2f} s, ratio {seconds / base:.2f}, "
                f"peak RSS {memory:.0f} MiB{rows}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
