"""Platform and tenant dumps streamed into a sink, checked by restoring them into PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orion_operator.backup import archive
from orion_operator.backup.archive import ArchiveInvalid, CustomArchiveReader
from orion_operator.backup.dump import (
    DumpError,
    PlatformDump,
    dump_platform,
    dump_tenant,
    find_pg_tool,
    verify_custom_archive,
)
from orion_operator.devenv.postgres import free_port
from tests.conftest import APP_ROLE, AppDatabase

TRICKY = 'Widget, "Deluxe"\nsecond line'


class MemorySink:
    """The storage writer's interface, in memory."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.writes = 0

    async def write(self, chunk: bytes) -> None:
        self.writes += 1
        self.buffer.write(chunk)

    @property
    def data(self) -> bytes:
        return self.buffer.getvalue()


class BrokenSink(MemorySink):
    """Fails on its second write, like a bucket going away mid-upload."""

    async def write(self, chunk: bytes) -> None:
        if self.writes >= 1:
            raise ConnectionError("storage went away")
        await super().write(chunk)


def seed(db: AppDatabase) -> None:
    """Two tenants with rows in every tenant-scoped table; acme's texts need CSV quoting."""
    db.execute(
        """INSERT INTO "Tenant" (id, name, plan)
           VALUES ('acme', 'Acme Corp', 'pro'), ('globex', 'Globex', 'starter')"""
    )
    db.execute(
        """INSERT INTO "User" (id, email, name, "tenantId") VALUES
           ('u1', 'ana@acme.test', %s, 'acme'),
           ('u2', 'bob@acme.test', 'Bob', 'acme'),
           ('u3', 'hank@globex.test', 'Hank', 'globex')""",
        (TRICKY,),
    )
    db.execute(
        """INSERT INTO "Product" (id, "tenantId", sku, name, price)
           VALUES ('p1', 'acme', 'W-1', %s, 9.99), ('p2', 'globex', 'G-1', 'Gadget', 5.00)""",
        (TRICKY,),
    )
    db.execute(
        """INSERT INTO "Sale" (id, "tenantId", "productId", quantity, total) VALUES
           ('s1', 'acme', 'p1', 2, 19.98), ('s2', 'acme', 'p1', 1, 9.99),
           ('s3', 'globex', 'p2', 3, 15.00)"""
    )
    db.execute(
        """INSERT INTO "AuditLog" ("tenantId", action)
           SELECT CASE WHEN g %% 2 = 0 THEN 'acme' ELSE 'globex' END, 'action ' || g
           FROM generate_series(1, 400) g"""
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


def tool(name: str) -> str:
    return str(find_pg_tool(name))


def plain_dump_of(db: AppDatabase, database: str) -> list[str]:
    """The database as SQL text, minus the lines that differ between any two dumps."""
    out = subprocess.run(
        [tool("pg_dump"), "--format=plain"],
        env=pg_env(db, database),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # \restrict carries a random key per dump (PostgreSQL 15.14 and later).
    return [
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]


def replay(db: AppDatabase, database: str, argv: list[str], dump: bytes) -> None:
    """Feed `dump` to pg_restore or psql connected to `database` as the app role."""
    subprocess.run(argv, input=dump, env=pg_env(db, database), check=True, capture_output=True)


@pytest.fixture
def fresh_database(app_database: AppDatabase) -> Iterator[str]:
    """An empty database (template1) owned by the app role, on the same server."""
    name = f"restore_{uuid.uuid4().hex[:10]}"
    app_database.server.create_database(name, owner=APP_ROLE)
    yield name
    app_database.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def children_named(*names: str) -> list[str]:
    """Our child processes with these names, reaped or not."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        if parent == os.getpid() and command in names:
            found.append(command)
    return found


async def test_custom_dump_restores_into_an_identical_database(
    app_database: AppDatabase, fresh_database: str
) -> None:
    seed(app_database)
    sink = MemorySink()

    result = await dump_platform(app_database.url, sink, chunk_size=4096)

    assert isinstance(result, PlatformDump)
    assert result.format == "custom"
    assert result.pg_dump_version.startswith("15")
    assert result.server_version.startswith("15")
    assert result.started_at <= result.finished_at
    assert result.size_bytes == len(sink.data)
    assert sink.writes > 1
    assert sink.data.startswith(b"PGDMP")
    replay(
        app_database,
        fresh_database,
        [tool("pg_restore"), "--exit-on-error", "-d", fresh_database],
        sink.data,
    )
    assert plain_dump_of(app_database, fresh_database) == plain_dump_of(
        app_database, app_database.name
    )


async def test_plain_dump_replays_with_psql(app_database: AppDatabase, fresh_database: str) -> None:
    seed(app_database)
    sink = MemorySink()

    result = await dump_platform(app_database.url, sink, fmt="plain")

    assert result.format == "plain"
    assert b'ALTER TABLE public."Tenant" OWNER' not in sink.data  # --no-owner
    replay(app_database, fresh_database, [tool("psql"), "-v", "ON_ERROR_STOP=1", "-q"], sink.data)
    assert plain_dump_of(app_database, fresh_database) == plain_dump_of(
        app_database, app_database.name
    )


async def good_archive(app_database: AppDatabase, notes: int = 3000) -> bytes:
    """A custom archive with table data, an empty table and large objects (their own blocks)."""
    seed(app_database)
    app_database.execute(
        f"""CREATE TABLE "Note" (id int, body text);
            INSERT INTO "Note"
              SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, {notes}) g;
            CREATE TABLE "Empty" (id int);
            SELECT lo_from_bytea(0, decode(repeat('ab', 40000), 'hex'));
            SELECT lo_from_bytea(0, ''::bytea)"""
    )
    sink = MemorySink()
    await dump_platform(app_database.url, sink)
    return sink.data


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "pg_restore"])
async def test_truncated_or_corrupt_archive_fails_verification(
    app_database: AppDatabase, in_process: bool
) -> None:
    good = await good_archive(app_database)
    middle = len(good) // 2
    late = len(good) * 9 // 10  # inside the compressed rows of "Note"

    async def verify(*chunks: bytes) -> None:
        await verify_custom_archive(chunks, in_process=in_process)

    await verify(good[:middle], good[middle:])
    await verify(*(good[i : i + 1000] for i in range(0, len(good), 1000)))
    with pytest.raises(DumpError, match="failed verification"):
        await verify(good[: len(good) - 20])
    with pytest.raises(DumpError, match="failed verification"):
        await verify(good[:middle], b"\x00" * 64, good[middle + 64 :])
    with pytest.raises(DumpError, match="failed verification"):
        await verify(good[:late], bytes([good[late] ^ 0x10]), good[late + 1 :])
    with pytest.raises(DumpError, match="failed verification"):
        await verify(b"this is not an archive")
    with pytest.raises(DumpError, match="failed verification"):
        await verify(b"")
    assert children_named("pg_restore") == []


async def test_every_truncation_fails_in_process_verification(app_database: AppDatabase) -> None:
    good = await good_archive(app_database, notes=20)
    reader = CustomArchiveReader()
    reader.feed(good)
    reader.finish()
    assert reader.header is not None and reader.header.compressed
    assert reader.inflated_bytes > len(good)

    accepted = []
    for length in range(len(good)):
        reader = CustomArchiveReader()
        with contextlib.suppress(ArchiveInvalid):
            reader.feed(good[:length])
            reader.finish()
            accepted.append(length)
    assert accepted == []


async def test_in_process_verification_reads_the_same_with_pythons_own_zlib(
    app_database: AppDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = await good_archive(app_database)
    late = len(good) * 9 // 10
    corrupt = good[:late] + bytes([good[late] ^ 0x10]) + good[late + 1 :]
    accelerated = CustomArchiveReader()
    accelerated.feed(good)
    accelerated.finish()

    monkeypatch.setattr(archive, "_ZLIB", zlib)
    plain = CustomArchiveReader()
    plain.feed(good)
    plain.finish()
    assert plain.inflated_bytes == accelerated.inflated_bytes
    with pytest.raises(DumpError, match="failed verification"):
        await verify_custom_archive([corrupt])


async def test_bytes_after_the_archive_fail_in_process_verification(
    app_database: AppDatabase,
) -> None:
    good = await good_archive(app_database)

    for tail in (b"\x00", b"\x01", b"\x01\x00\x05\x00\x00\x00", good[-100:]):
        with pytest.raises(DumpError, match="failed verification"):
            await verify_custom_archive([good, tail])


async def test_an_archive_version_it_does_not_read_is_left_to_pg_restore(
    app_database: AppDatabase,
) -> None:
    good = await good_archive(app_database)
    newer = good[:5] + bytes([1, 99, 0]) + good[8:]  # "archive version 1.99"

    with pytest.raises(DumpError, match=r"pg_restore exited 1.*unsupported version \(1\.99\)"):
        await verify_custom_archive([newer[:3], newer[3:20], newer[20:]])
    assert children_named("pg_restore") == []


async def test_wrong_password_fails_clearly_without_leaking_it(app_database: AppDatabase) -> None:
    wrong = "not-the-pw-" + uuid.uuid4().hex
    url = app_database.url.replace(app_database.password, wrong)

    with pytest.raises(DumpError) as caught:
        await dump_platform(url, MemorySink())

    message = str(caught.value)
    assert "password authentication failed" in message
    assert wrong not in message
    assert app_database.password not in message
    assert children_named("pg_dump", "pg_restore") == []


async def test_server_down_fails_clearly(app_database: AppDatabase) -> None:
    url = app_database.url.replace(f":{app_database.server.port}/", f":{free_port()}/")

    with pytest.raises(DumpError, match="cannot connect to the database") as caught:
        await dump_platform(url, MemorySink())

    assert app_database.password not in str(caught.value)


async def test_pg_dump_failure_carries_its_stderr_redacted(app_database: AppDatabase) -> None:
    # A table the app role may not read: pg_dump connects, then fails part-way.
    app_database.server.psql("CREATE TABLE forbidden (x int)", database=app_database.name)

    with pytest.raises(DumpError) as caught:
        await dump_platform(app_database.url, MemorySink())

    message = str(caught.value)
    assert "pg_dump exited 1" in message
    assert "permission denied" in message
    assert app_database.password not in message
    assert children_named("pg_dump", "pg_restore") == []


async def test_failing_sink_kills_pg_dump_and_reraises(app_database: AppDatabase) -> None:
    seed(app_database)

    with pytest.raises(ConnectionError, match="storage went away"):
        await dump_platform(app_database.url, BrokenSink(), chunk_size=1024)

    assert children_named("pg_dump", "pg_restore") == []


class SlowThenBrokenSink(MemorySink):
    """Slow over its first chunk, so pg_dump's output backs up in the pipe, then fails."""

    async def write(self, chunk: bytes) -> None:
        if self.writes >= 1:
            raise ConnectionError("storage went away")
        await asyncio.sleep(0.5)
        await super().write(chunk)


async def test_failing_sink_ends_the_dump_even_with_pg_dumps_output_backed_up(
    app_database: AppDatabase,
) -> None:
    app_database.execute(
        'CREATE TABLE "Bulk" AS SELECT g AS id, md5(g::text) AS body'
        " FROM generate_series(1, 200000) g"
    )

    with pytest.raises(ConnectionError, match="storage went away"):
        await asyncio.wait_for(
            dump_platform(app_database.url, SlowThenBrokenSink(), chunk_size=1 << 16), 30
        )

    assert children_named("pg_dump", "pg_restore") == []


def read_csv(archive: zipfile.ZipFile, name: str) -> list[list[str]]:
    with archive.open(name) as raw:
        return list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))


def columns_of(db: AppDatabase, table: str) -> list[str]:
    rows = db.query(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [str(row[0]) for row in rows]


async def test_tenant_zip_holds_exactly_that_tenants_rows(app_database: AppDatabase) -> None:
    seed(app_database)
    sink = MemorySink()

    result = await dump_tenant(app_database.url, "acme", sink, chunk_size=256)

    assert result.tenant_id == "acme"
    assert result.row_counts == {"AuditLog": 200, "Product": 1, "Sale": 2, "User": 2}
    assert result.server_version.startswith("15")
    archive = zipfile.ZipFile(io.BytesIO(sink.data))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == sorted(
        ["Tenant.csv", "AuditLog.csv", "Product.csv", "Sale.csv", "User.csv"]
    )
    tenant = read_csv(archive, "Tenant.csv")
    assert tenant[0] == columns_of(app_database, "Tenant")
    assert [row[:3] for row in tenant[1:]] == [["acme", "Acme Corp", "pro"]]

    expected_ids = {"User": {"u1", "u2"}, "Product": {"p1"}, "Sale": {"s1", "s2"}}
    for table, count in result.row_counts.items():
        header, *rows = read_csv(archive, f"{table}.csv")
        assert header == columns_of(app_database, table)
        assert len(rows) == count
        tenant_column = header.index("tenantId")
        assert {row[tenant_column] for row in rows} == {"acme"}
        if table in expected_ids:
            assert {row[header.index("id")] for row in rows} == expected_ids[table]
    users = read_csv(archive, "User.csv")
    assert TRICKY in [row[users[0].index("name")] for row in users[1:]]
    products = read_csv(archive, "Product.csv")
    assert products[1][products[0].index("name")] == TRICKY
    assert b"globex" not in b"".join(archive.read(name) for name in archive.namelist())


async def test_unknown_tenant_is_an_error(app_database: AppDatabase) -> None:
    seed(app_database)

    with pytest.raises(DumpError, match='tenant "initech" has no row'):
        await dump_tenant(app_database.url, "initech", MemorySink())


async def test_tenant_dump_with_wrong_password_does_not_leak_it(app_database: AppDatabase) -> None:
    wrong = "not-the-pw-" + uuid.uuid4().hex
    url = app_database.url.replace(app_database.password, wrong)

    with pytest.raises(DumpError, match="cannot connect") as caught:
        await dump_tenant(url, "acme", MemorySink())

    assert wrong not in str(caught.value)
