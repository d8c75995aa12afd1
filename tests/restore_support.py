"""Helpers shared by the restore tests: sample data, dumps to compare, per-tenant checksums."""

from __future__ import annotations

import io
import os
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orion_operator.backup.dump import find_pg_tool
from orion_operator.backup.run import BackupRequest, BackupResult, run_backup
from orion_operator.backup.storage import Location, open_writer, read_manifest
from tests.conftest import APP_ROLE, AppDatabase

TENANT_TABLES = ("User", "Product", "Sale", "AuditLog")
TRICKY = 'Widget, "Deluxe"\nsecond line'


def seed(db: AppDatabase) -> None:
    """Three tenants with rows in every tenant-scoped table, plus a platform admin (NULL tenant)."""
    db.execute(
        """INSERT INTO "Tenant" (id, name, plan) VALUES
             ('acme', 'Acme Corp', 'pro'), ('globex', 'Globex', 'starter'),
             ('initech', 'Initech', 'free')"""
    )
    db.execute(
        """INSERT INTO "User" (id, email, name, "tenantId") VALUES
             ('u1', 'ana@acme.test', %s, 'acme'), ('u2', 'bob@acme.test', NULL, 'acme'),
             ('u3', 'hank@globex.test', 'Hank', 'globex'), ('u4', 'root@orion.test', 'Root', NULL),
             ('u5', 'peter@initech.test', '', 'initech')""",
        (TRICKY,),
    )
    db.execute(
        """INSERT INTO "Product" (id, "tenantId", sku, name, price) VALUES
             ('p1', 'acme', 'W-1', %s, 9.99), ('p2', 'acme', 'W-2', 'Wrench', 4.50),
             ('p3', 'globex', 'G-1', 'Gadget', 5.00), ('p4', 'initech', 'I-1', 'Stapler', 12)""",
        (TRICKY,),
    )
    db.execute(
        """INSERT INTO "Sale" (id, "tenantId", "productId", quantity, total) VALUES
             ('s1', 'acme', 'p1', 2, 19.98), ('s2', 'acme', 'p2', 1, 4.50),
             ('s3', 'globex', 'p3', 3, 15.00), ('s4', 'initech', 'p4', 1, 12)"""
    )
    db.execute(
        """INSERT INTO "AuditLog" ("tenantId", action)
           SELECT (ARRAY['acme', 'globex', 'initech'])[1 + g %% 3], 'action ' || g
           FROM generate_series(1, 300) g"""
    )


def pg_env(db: AppDatabase, database: str | None = None) -> dict[str, str]:
    url = urlsplit(db.url)
    return dict(
        os.environ,
        PGHOST=url.hostname or "",
        PGPORT=str(url.port),
        PGUSER=APP_ROLE,
        PGPASSWORD=db.password,
        PGDATABASE=database or db.name,
    )


def url_of(db: AppDatabase, database: str) -> str:
    return db.url.rsplit("/", 1)[0] + f"/{database}"


def plain_dump_of(db: AppDatabase, database: str) -> list[str]:
    """The database as SQL text, minus the lines that differ between any two dumps."""
    out = subprocess.run(
        [str(find_pg_tool("pg_dump")), "--format=plain"],
        env=pg_env(db, database),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # \restrict carries a random key per dump (PostgreSQL 15.14 and later).
    return [
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]


@contextmanager
def fresh_database(db: AppDatabase) -> Iterator[str]:
    """An empty database (template1) owned by the app role, on the same server."""
    name = f"restore_{uuid.uuid4().hex[:10]}"
    db.server.create_database(name, owner=APP_ROLE)
    try:
        yield name
    finally:
        db.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tenant_checksums(db: AppDatabase, tenant: str | None, database: str | None = None) -> dict:
    """md5 of each table's rows for `tenant` (None: rows with a NULL tenant), ordered."""
    url = url_of(db, database) if database else db.url
    condition = '"tenantId" IS NULL' if tenant is None else '"tenantId" = %s'
    params: tuple[Any, ...] = () if tenant is None else (tenant,)
    sums = {}
    import psycopg

    with psycopg.connect(url) as conn:
        for table in TENANT_TABLES:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                f'FROM "{table}" t WHERE {condition}',
                params,
            ).fetchone()
            sums[table] = row
        if tenant is not None:
            sums["Tenant"] = conn.execute(
                'SELECT md5(t::text) FROM "Tenant" t WHERE id = %s', (tenant,)
            ).fetchone()
    return sums


def everyone(db: AppDatabase, database: str | None = None) -> dict:
    return {
        tenant: tenant_checksums(db, tenant, database)
        for tenant in ("acme", "globex", "initech", None)
    }


async def backup_of(
    db: AppDatabase,
    location: Location,
    *,
    kind: str = "platform",
    fmt: str = "custom",
    tenant: str | None = None,
    url: str | None = None,
) -> BackupResult:
    key = (
        f"tenants/{tenant}/t-{uuid.uuid4().hex[:6]}.zip"
        if kind == "tenant"
        else (f"platform/p-{uuid.uuid4().hex[:6]}.{'dump' if fmt == 'custom' else 'sql'}")
    )
    return await run_backup(
        BackupRequest(
            source="tests/backup",
            database_url=url or db.url,
            location=location,
            key=key,
            kind=kind,
            format=fmt,
            tenant_id=tenant,
            min_free_percent=0,
        )
    )


async def rewrite_tenant_zip(
    location: Location,
    key: str,
    edit: Callable[[dict[str, bytes]], dict[str, bytes]],
    manifest_edit: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Replace a tenant ZIP by an edited one, with a manifest whose sha256 matches it: what a
    damaged-but-consistent artifact looks like (the checksum passes, the content is wrong)."""
    from orion_operator.restore.artifact import load_artifact, verified_chunks

    artifact = await load_artifact(location, key)
    data = b"".join([chunk async for chunk in verified_chunks(artifact)])
    entries = edit({n: zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zip_names(data)})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
    manifest = dict(await read_manifest(location, key) or {})
    for field in ("sha256", "sizeBytes", "uri"):
        manifest.pop(field, None)
    if manifest_edit:
        manifest_edit(manifest)
    async with open_writer(location, key) as writer:
        await writer.write(out.getvalue())
        await writer.commit(manifest)


def zip_names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def flip_a_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a file in place without changing its size."""
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if offset is None else offset
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))


def remove(path: Path) -> None:
    path.unlink()


def leftover_tenant_zips() -> list[Path]:
    """Tenant ZIPs a restore left in the temporary directory (there should be none)."""
    import tempfile

    return list(Path(tempfile.gettempdir()).glob("orion-restore-*/tenant.zip"))
