"""Connecting to the target database, with errors that never carry its password."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orion_operator.redaction import redact, secrets_of_url
from orion_operator.restore.errors import RestoreError

CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "orion-operator-restore"


def scrub(text: str, database_url: str) -> str:
    """`text` without the URL's password or any URL userinfo."""
    return redact(text, secrets_of_url(database_url)).strip()


def database_name(database_url: str) -> str:
    """The database a URL points at, for status and messages (never the URL itself)."""
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.Error as error:
        raise RestoreError(
            "InvalidDatabaseUrl",
            f"the database URL is not valid: {scrub(str(error), database_url)}",
        ) from None
    return str(params.get("dbname") or params.get("user") or "")


async def connect(database_url: str, *, autocommit: bool = False) -> psycopg.AsyncConnection:
    """A connection to the target, or RestoreError("DatabaseUnreachable") saying why."""
    try:
        given = conninfo_to_dict(database_url)
        defaults: dict[str, str | int] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": APPLICATION_NAME,
        }
        extra = {key: value for key, value in defaults.items() if key not in given}
        return await psycopg.AsyncConnection.connect(
            make_conninfo(database_url, **extra), autocommit=autocommit
        )
    except psycopg.Error as error:
        raise RestoreError(
            "DatabaseUnreachable",
            f"cannot connect to the target database ({scrub(str(error), database_url)}); "
            "check the host, port, user and password of the database URL",
        ) from None


def first_line(error: BaseException) -> str:
    """A PostgreSQL error's primary message, with its DETAIL when there is one."""
    text = str(error).strip()
    lines = text.splitlines()
    detail = next((line for line in lines[1:] if line.startswith("DETAIL:")), None)
    return f"{lines[0]} ({detail})" if lines and detail else (lines[0] if lines else text)
