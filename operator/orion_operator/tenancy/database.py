"""Connections to the application's PostgreSQL, with failures turned into tenancy errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from orion_operator.redaction import redact, secrets_of_url
from orion_operator.tenancy.errors import DatabaseUnavailable, SchemaMismatch


@asynccontextmanager
async def connect(
    url: str, *, connect_timeout_seconds: int = 5
) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit connection; connection and schema errors come out redacted and typed."""
    secrets = secrets_of_url(url)
    try:
        connection = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=connect_timeout_seconds
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL: {redact(str(error).strip(), secrets)}"
        ) from None
    try:
        async with connection:
            yield connection
    except psycopg.errors.UndefinedTable as error:
        raise SchemaMismatch(redact(str(error).strip().splitlines()[0], secrets)) from None
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(
            f"PostgreSQL connection lost: {redact(str(error).strip(), secrets)}"
        ) from None
