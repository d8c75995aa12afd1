"""The producers of backups: `pg_dump` of the platform and a ZIP of CSVs per tenant, streamed.

Both write to a `ChunkSink` (the storage writer) in bounded chunks, so memory stays constant
whatever the size of the database, and neither blocks the event loop. Failures raise `DumpError`
with credentials scrubbed; errors raised by the sink itself propagate unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import zipfile
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orion_operator.backup.archive import ArchiveInvalid, ArchiveUnsupported, CustomArchiveReader
from orion_operator.redaction import redact, secrets_of_url
from orion_operator.tenancy.rows import DEFAULT_TENANT_TABLE, TENANT_COLUMN, tenant_scoped_tables

log = logging.getLogger(__name__)

DumpFormat = Literal["custom", "plain"]

STDERR_TAIL_BYTES = 4096
CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "orion-operator-backup"

# libpq's connection keywords and the environment variables that carry them to pg_dump.
_LIBPQ_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcompression": "PGSSLCOMPRESSION",
    "requiressl": "PGREQUIRESSL",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


class DumpError(Exception):
    """A dump that failed; the message is safe to show (no credentials) and says what happened."""


class ChunkSink(Protocol):
    """Where a dump's bytes go, in order (the storage writer; commit/abort are the caller's)."""

    async def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class PlatformDump:
    format: DumpFormat
    pg_dump_version: str
    server_version: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    size_bytes: int = 0


@dataclass(frozen=True)
class TenantDump:
    tenant_id: str
    row_counts: dict[str, int]  # per tenant-scoped table; the tenant's own row is not counted
    started_at: datetime.datetime
    finished_at: datetime.datetime
    server_version: str
    entries: list[str] = field(default_factory=list)  # CSV names in the ZIP, in order


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ---------------------------------------------------------------------------------------------
# Finding the client tools and connecting


def find_pg_tool(name: str, pg_bindir: Path | None = None) -> Path:
    """`name` from `pg_bindir`, else $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin
    (Debian's layout), else PATH."""
    if pg_bindir is None and (explicit := os.environ.get("PG_BINDIR")):
        pg_bindir = Path(explicit)
    if pg_bindir is not None:
        tool = pg_bindir / name
        if not tool.is_file():
            raise DumpError(f"{name} not found in {pg_bindir} (pg_bindir or $PG_BINDIR)")
        return tool
    versions = [
        path
        for path in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
        if path.parent.parent.name.isdigit()
    ]
    if versions:
        return max(versions, key=lambda path: int(path.parent.parent.name))
    if found := shutil.which(name):
        return Path(found)
    raise DumpError(
        f"{name} not found: install the PostgreSQL client tools or set $PG_BINDIR to their bin/"
    )


def libpq_environment(database_url: str) -> dict[str, str]:
    """The child environment that connects libpq tools to `database_url`.

    The password travels in PGPASSWORD, never in argv, where `ps` would show it to every user.
    Other PG* variables of ours are dropped so that only the URL decides where the dump comes from.
    """
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.Error as error:
        raise DumpError(
            f"the database URL is not valid: {_scrub(str(error), database_url)}"
        ) from None
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    for keyword, value in params.items():
        if value is None:
            continue
        variable = _LIBPQ_ENVIRONMENT.get(keyword)
        if variable is None:
            raise DumpError(
                f'the database URL has parameter "{keyword}", which pg_dump cannot take'
            )
        environment[variable] = str(value)
    environment.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_SECONDS))
    environment.setdefault("PGAPPNAME", APPLICATION_NAME)
    return environment


def _scrub(text: str, database_url: str) -> str:
    return redact(text, secrets_of_url(database_url)).strip()


async def _connect(database_url: str) -> psycopg.AsyncConnection:
    try:
        given = conninfo_to_dict(database_url)
        defaults: dict[str, str | int] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": APPLICATION_NAME,
        }
        extra = {key: value for key, value in defaults.items() if key not in given}
        return await psycopg.AsyncConnection.connect(make_conninfo(database_url, **extra))
    except psycopg.Error as error:
        raise DumpError(
            f"cannot connect to the database ({_scrub(str(error), database_url)}); "
            "check the host, port, user and password of the database URL"
        ) from None


async def server_version(database_url: str) -> str:
    """`SHOW server_version` of the database at `database_url`."""
    conn = await _connect(database_url)
    async with conn:
        return await _show_server_version(conn)


async def _show_server_version(conn: psycopg.AsyncConnection) -> str:
    cursor = await conn.execute("SHOW server_version")
    row = await cursor.fetchone()
    return str(row[0]) if row else ""


# ---------------------------------------------------------------------------------------------
# Subprocess helpers


class _StderrTail:
    """Reads a child's stderr to the end, keeping only its last `limit` bytes."""

    def __init__(self, stream: asyncio.StreamReader | None, limit: int = STDERR_TAIL_BYTES) -> None:
        self._tail = bytearray()
        self._limit = limit
        self._task = asyncio.create_task(self._collect(stream)) if stream is not None else None

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        while data := await stream.read(65536):
            self._tail += data
            if len(self._tail) > self._limit:
                del self._tail[: len(self._tail) - self._limit]

    async def text(self) -> str:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        return self._tail.decode("utf-8", errors="replace").strip()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Kill `process` if it still runs and reap it: no orphans, no zombies.

    Its stdout is read to the end first: asyncio's wait() returns only once the child's pipes
    are closed, and a pipe nobody reads any more (a failed sink stopped the copy) never is.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    if process.stdout is not None:
        while await process.stdout.read(1 << 16):
            pass
    await process.wait()


async def pg_dump_version(pg_bindir: Path | None = None) -> str:
    """`pg_dump --version` without the program name, e.g. "15.18 (Debian 15.18-0+deb12u1)"."""
    process = await asyncio.create_subprocess_exec(
        str(find_pg_tool("pg_dump", pg_bindir)),
        "--version",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise DumpError(f"pg_dump --version failed: {err.decode(errors='replace').strip()}")
    line = out.decode(errors="replace").strip()
    return line.split(") ", 1)[1] if line.startswith("pg_dump (") and ") " in line else line


# ---------------------------------------------------------------------------------------------
# Verifying a custom-format archive


class _PgRestoreVerifier:
    """`pg_restore` reading a custom-format archive from its stdin while the dump streams.

    `pg_restore --list` is not enough: it reads the header and table of contents and stops, so a
    truncated or corrupt data section would pass. Converting the whole archive to a script on
    /dev/null reads (and decompresses) every block, without touching any database.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._stderr = _StderrTail(process.stderr)

    @classmethod
    async def start(cls, pg_bindir: Path | None = None) -> _PgRestoreVerifier:
        process = await asyncio.create_subprocess_exec(
            str(find_pg_tool("pg_restore", pg_bindir)),
            "--file",
            os.devnull,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def feed(self, chunk: bytes) -> None:
        """Pass `chunk` on; raises DumpError at once if pg_restore has given up on the archive."""
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(chunk)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self.finish()
            raise DumpError("the archive failed verification: pg_restore stopped reading") from None

    async def finish(self) -> None:
        """End of the archive: pg_restore must have read all of it and exit 0."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await stdin.wait_closed()
        code = await self._process.wait()
        if code != 0:
            raise DumpError(
                f"the archive failed verification (pg_restore exited {code}): "
                f"{await self._stderr.text() or 'no message'}"
            )

    async def kill(self) -> None:
        await _stop(self._process)
        self._stderr.cancel()


class ArchiveVerifier:
    """Checks a custom-format archive while the dump streams: complete, and every block readable.

    The archive is read in this process (`archive.CustomArchiveReader`, in a worker thread): the
    same walk `pg_restore -f /dev/null` does, inflating every block, at a fraction of its CPU,
    which the dump itself needs. An archive version or compression that reader does not know
    (a newer pg_dump) goes to `pg_restore` instead, from its first byte.
    """

    def __init__(self, pg_bindir: Path | None) -> None:
        self._pg_bindir = pg_bindir
        self._reader = CustomArchiveReader()
        self._head: list[bytes] = []  # kept until the header is read, for pg_restore
        self._pg_restore: _PgRestoreVerifier | None = None

    @classmethod
    async def start(
        cls, pg_bindir: Path | None = None, *, in_process: bool = True
    ) -> ArchiveVerifier:
        verifier = cls(pg_bindir)
        if not in_process:
            verifier._pg_restore = await _PgRestoreVerifier.start(pg_bindir)
        return verifier

    async def feed(self, chunk: bytes) -> None:
        """Check `chunk`; raises DumpError at once when the archive cannot be valid."""
        if self._pg_restore is not None:
            await self._pg_restore.feed(chunk)
            return
        reader = self._reader
        if reader.header is None:
            self._head.append(chunk)
        try:
            await asyncio.to_thread(reader.feed, chunk)
        except ArchiveUnsupported as unsupported:
            log.info("archive verification by pg_restore: %s", unsupported)
            self._pg_restore = await _PgRestoreVerifier.start(self._pg_bindir)
            for earlier in self._head:
                await self._pg_restore.feed(earlier)
        except ArchiveInvalid as invalid:
            raise DumpError(f"the archive failed verification: {invalid}") from None
        if reader.header is not None:
            self._head.clear()

    async def finish(self) -> None:
        """End of the archive: it must be complete."""
        if self._pg_restore is not None:
            await self._pg_restore.finish()
            return
        try:
            self._reader.finish()
        except ArchiveInvalid as invalid:
            raise DumpError(f"the archive failed verification: {invalid}") from None

    async def kill(self) -> None:
        if self._pg_restore is not None:
            await self._pg_restore.kill()


async def verify_custom_archive(
    chunks: AsyncIterable[bytes] | Iterable[bytes],
    pg_bindir: Path | None = None,
    *,
    in_process: bool = True,
) -> None:
    """Raise DumpError unless `chunks` make a complete, readable custom-format archive.

    `in_process=False` has pg_restore check it instead of this process's reader.
    """
    verifier = await ArchiveVerifier.start(pg_bindir, in_process=in_process)
    try:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                await verifier.feed(chunk)
        else:
            for chunk in chunks:
                await verifier.feed(chunk)
        await verifier.finish()
    finally:
        await verifier.kill()


# ---------------------------------------------------------------------------------------------
# The platform dump


def pg_dump_arguments(fmt: DumpFormat) -> list[str]:
    """pg_dump's options for `fmt`; the connection comes from the environment.

    Plain dumps leave out ownership and privileges: they are replayed with psql as whatever role
    the target database gives (a managed database's own user), where `ALTER ... OWNER TO` and
    GRANTs to roles that do not exist there would stop the restore. A custom archive keeps both
    (pg_dump ignores --no-owner for archives anyway); `pg_restore --no-owner` decides at restore.
    """
    arguments = ["--no-password"]  # never wait for a password prompt nobody can answer
    if fmt == "custom":
        arguments.append("--format=custom")
    elif fmt == "plain":
        arguments += ["--format=plain", "--no-owner", "--no-privileges"]
    else:
        raise DumpError(f'unknown dump format "{fmt}": use "custom" or "plain"')
    return arguments


async def dump_platform(
    database_url: str,
    sink: ChunkSink,
    *,
    fmt: DumpFormat = "custom",
    pg_bindir: Path | None = None,
    chunk_size: int = 1 << 20,
) -> PlatformDump:
    """Stream `pg_dump` of the whole database into `sink`, verifying custom archives on the way.

    Raises DumpError when the database cannot be reached, pg_dump fails, or the archive does not
    verify; whatever the sink raises is re-raised after pg_dump is killed.
    """
    arguments = pg_dump_arguments(fmt)
    environment = libpq_environment(database_url)
    pg_dump = find_pg_tool("pg_dump", pg_bindir)
    tool_version = await pg_dump_version(pg_bindir)
    started_at = _now()
    # Connecting first gives a clear message for the common failures (wrong password, server
    # down) and the server's own version string, which the archive does not expose simply.
    version = await server_version(database_url)

    verifier = await ArchiveVerifier.start(pg_bindir) if fmt == "custom" else None
    try:
        process = await asyncio.create_subprocess_exec(
            str(pg_dump),
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
    except BaseException:
        if verifier is not None:
            await verifier.kill()
        raise
    stderr = _StderrTail(process.stderr)
    size = 0
    try:
        assert process.stdout is not None
        while chunk := await _read_chunk(process.stdout, chunk_size):
            if verifier is not None:
                await verifier.feed(chunk)
            await sink.write(chunk)
            size += len(chunk)
        code = await process.wait()
        if code != 0:
            raise DumpError(
                f"pg_dump exited {code}: "
                f"{_scrub(await stderr.text(), database_url) or 'no message on stderr'}"
            )
        if verifier is not None:
            await verifier.finish()
    finally:
        await _stop(process)
        stderr.cancel()
        if verifier is not None:
            await verifier.kill()
    return PlatformDump(fmt, tool_version, version, started_at, _now(), size)


async def _read_chunk(stream: asyncio.StreamReader, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end (a pipe hands out at most ~64 KiB per read)."""
    buffer = bytearray()
    while len(buffer) < size:
        data = await stream.read(size - len(buffer))
        if not data:
            break
        buffer += data
    return bytes(buffer)


# ---------------------------------------------------------------------------------------------
# The tenant dump


class _Collector:
    """A write-only, non-seekable file for ZipFile: it keeps what was written until taken.

    Having no tell() makes ZipFile stream (data descriptors after each entry, no seeking back).
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.discard = False

    def write(self, data: bytes) -> int:
        if not self.discard:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _ZipStream:
    """A ZIP written to an async sink: compression runs in a worker thread, one bounded step at
    a time, and each step's output goes to the sink before the next step begins."""

    def __init__(self, sink: ChunkSink, moment: datetime.datetime) -> None:
        self._sink = sink
        self._out = _Collector()
        self._zip = zipfile.ZipFile(self._out, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]
        self._entry: IO[bytes] | None = None
        self._date_time = moment.timetuple()[:6]
        self._step_running = False

    async def _step(self, function: Callable[[], object]) -> None:
        """Run one ZipFile call off the event loop, then hand its output to the sink."""
        self._step_running = True
        try:
            await asyncio.to_thread(function)
        finally:
            self._step_running = False
        if data := self._out.take():
            await self._sink.write(data)

    async def open_entry(self, name: str) -> None:
        info = zipfile.ZipInfo(name, date_time=self._date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16

        def open_entry() -> None:
            # The size is unknown up front: zip64 from the start lets an entry pass 4 GiB.
            self._entry = self._zip.open(info, "w", force_zip64=True)

        await self._step(open_entry)

    async def write(self, data: bytes) -> None:
        entry = self._entry
        assert entry is not None
        await self._step(lambda: entry.write(data))

    async def close_entry(self) -> None:
        entry, self._entry = self._entry, None
        assert entry is not None
        await self._step(entry.close)

    async def close(self) -> None:
        await self._step(self._zip.close)

    def abandon(self) -> None:
        """After a failure: close quietly into nothing (ZipFile complains when collected open).

        Not while a cancelled step may still be running in its thread: ZipFile is not thread-safe.
        """
        self._out.discard = True
        if self._step_running:
            return
        with contextlib.suppress(Exception):
            if self._entry is not None:
                self._entry.close()
        with contextlib.suppress(Exception):
            self._zip.close()


async def _copy_entry(
    conn: psycopg.AsyncConnection,
    stream: _ZipStream,
    name: str,
    query: sql.Composed,
    chunk_size: int,
) -> int:
    """COPY `query` as CSV into ZIP entry `name`; returns the number of data rows."""
    await stream.open_entry(name)
    messages = 0
    buffer = bytearray()
    async with conn.cursor() as cursor, cursor.copy(query) as copy:
        async for data in copy:
            # In COPY OUT the server sends one CopyData message per row (the header is one too),
            # so counting messages counts rows even when a CSV field holds newlines.
            messages += 1
            buffer += data
            if len(buffer) >= chunk_size:
                await stream.write(bytes(buffer))
                buffer.clear()
    if buffer:
        await stream.write(bytes(buffer))
    await stream.close_entry()
    return max(messages - 1, 0)


def _csv_copy(select: sql.Composable) -> sql.Composed:
    return sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(select)


async def dump_tenant(
    database_url: str,
    tenant_id: str,
    sink: ChunkSink,
    *,
    tenant_table: str = "Tenant",
    schema: str = "public",
    chunk_size: int = 1 << 20,
) -> TenantDump:
    """Stream a ZIP into `sink`: `<tenant_table>.csv` with the tenant's row, and one CSV (with a
    header) per tenant-scoped table holding exactly that tenant's rows.

    Every table is read in one REPEATABLE READ, read-only transaction, so the CSVs agree with each
    other (no Sale without its Product) even while the application keeps writing.
    """
    started_at = _now()
    conn = await _connect(database_url)
    stream: _ZipStream | None = None
    try:
        async with conn:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            async with conn.transaction():
                version = await _show_server_version(conn)
                tenants = sql.SQL("{}.{}").format(
                    sql.Identifier(schema), sql.Identifier(tenant_table)
                )
                id_column = sql.Identifier(DEFAULT_TENANT_TABLE.id_column)
                found = await conn.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(tenants, id_column),
                    (tenant_id,),
                )
                if await found.fetchone() is None:
                    raise DumpError(
                        f'tenant "{tenant_id}" has no row in table "{schema}"."{tenant_table}": '
                        "nothing to back up; check the tenant id"
                    )
                tables = [t for t in await tenant_scoped_tables(conn, schema) if t != tenant_table]

                stream = _ZipStream(sink, started_at)
                literal = sql.Literal(tenant_id)  # COPY takes no parameters
                entries = [f"{tenant_table}.csv"]
                await _copy_entry(
                    conn,
                    stream,
                    entries[0],
                    _csv_copy(
                        sql.SQL("SELECT * FROM {} WHERE {} = {}").format(
                            tenants, id_column, literal
                        )
                    ),
                    chunk_size,
                )
                row_counts: dict[str, int] = {}
                for table in tables:
                    select = sql.SQL("SELECT * FROM {}.{} WHERE {} = {}").format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.Identifier(TENANT_COLUMN),
                        literal,
                    )
                    entries.append(f"{table}.csv")
                    row_counts[table] = await _copy_entry(
                        conn, stream, entries[-1], _csv_copy(select), chunk_size
                    )
            await stream.close()
            stream = None
    except psycopg.Error as error:
        raise DumpError(
            f'tenant "{tenant_id}" dump failed: {_scrub(str(error), database_url)}'
        ) from None
    finally:
        if stream is not None:
            stream.abandon()
    return TenantDump(tenant_id, row_counts, started_at, _now(), version, entries)
