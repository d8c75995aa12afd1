"""Connections to the application's PostgreSQL, with failures turned into tenancy errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

import psycopg
from psycopg.pq import TransactionStatus

from orion_operator.redaction import redact, secrets_of_url
from orion_operator.tenancy.errors import DatabaseUnavailable, SchemaMismatch


async def _open(
    url: str, secrets: list[str], connect_timeout_seconds: int
) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=connect_timeout_seconds
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL: {redact(str(error).strip(), secrets)}"
        ) from None


@contextmanager
def _typed_errors(secrets: list[str]) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UndefinedTable as error:
        raise SchemaMismatch(redact(str(error).strip().splitlines()[0], secrets)) from None
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(
            f"PostgreSQL connection lost: {redact(str(error).strip(), secrets)}"
        ) from None


@asynccontextmanager
async def connect(
    url: str, *, connect_timeout_seconds: int = 5
) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit connection; connection and schema errors come out redacted and typed."""
    secrets = secrets_of_url(url)
    connection = await _open(url, secrets, connect_timeout_seconds)
    with _typed_errors(secrets):
        async with connection:
            yield connection


class ConnectionPool:
    """Connections kept open between reconciles, at most `max_per_database` per database URL.

    Opening a connection (TCP, SCRAM authentication, a server process) costs far more than the
    queries of a Tenant reconcile, and one connection per concurrent reconcile would exhaust the
    server's max_connections when thousands of Tenants change at once. New connections come from
    `connect`'s code, so failures read the same as without the pool.
    """

    # An idle connection older than this is checked before use (the server may have restarted).
    CHECK_AFTER_IDLE_SECONDS = 10.0

    def __init__(self, max_per_database: int = 8, max_idle_seconds: float = 300.0) -> None:
        self.max_per_database = max_per_database
        # Longer than the one-minute Tenant resync, so a steady operator keeps its connections;
        # a URL nobody asks for any more (a rotated password, a deleted database) lets its go.
        self.max_idle_seconds = max_idle_seconds
        self._idle: dict[str, list[tuple[psycopg.AsyncConnection, float]]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_prune = 0.0

    async def _close_long_idle(self) -> None:
        now = time.monotonic()
        # Every reconcile borrows a connection: look for long-idle ones only now and then.
        if now < self._next_prune:
            return
        self._next_prune = now + self.max_idle_seconds / 5
        oldest_kept = now - self.max_idle_seconds
        stale = []
        # Sorted out before the first await, so no other task sees a half-pruned list.
        for url, idle in list(self._idle.items()):
            stale += [connection for connection, since in idle if since < oldest_kept]
            idle[:] = [(connection, since) for connection, since in idle if since >= oldest_kept]
            if not idle:
                del self._idle[url]
        for connection in stale:
            await connection.close()

    async def _take_idle(self, url: str) -> psycopg.AsyncConnection | None:
        idle = self._idle.get(url) or []
        while idle:
            connection, since = idle.pop()
            if time.monotonic() - since < self.CHECK_AFTER_IDLE_SECONDS:
                return connection
            try:
                await connection.execute("SELECT 1")
                return connection
            except psycopg.Error:
                await connection.close()
        return None

    def _reusable(self, connection: psycopg.AsyncConnection) -> bool:
        return (
            not connection.closed
            and connection.autocommit
            and not connection.read_only
            and connection.info.transaction_status == TransactionStatus.IDLE
        )

    @asynccontextmanager
    async def connection(
        self, url: str, *, connect_timeout_seconds: int = 5
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """An autocommit connection to `url`, given back for reuse when left clean."""
        secrets = secrets_of_url(url)
        await self._close_long_idle()
        slots = self._slots.setdefault(url, asyncio.Semaphore(self.max_per_database))
        async with slots:
            connection = await self._take_idle(url)
            if connection is None:
                connection = await _open(url, secrets, connect_timeout_seconds)
            try:
                with _typed_errors(secrets):
                    yield connection
            finally:
                # A connection left mid-query or mid-transaction (an error, a cancel) is not reused.
                if self._reusable(connection):
                    self._idle.setdefault(url, []).append((connection, time.monotonic()))
                else:
                    await connection.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection, _ in idle:
                await connection.close()
        self._idle.clear()


def session(
    url: str, *, pool: ConnectionPool | None = None, connect_timeout_seconds: int = 5
) -> AbstractAsyncContextManager[psycopg.AsyncConnection]:
    """A connection from `pool` when the caller has one, else a new one closed after use."""
    if pool is None:
        return connect(url, connect_timeout_seconds=connect_timeout_seconds)
    return pool.connection(url, connect_timeout_seconds=connect_timeout_seconds)
