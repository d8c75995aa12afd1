"""Platform restores: a pg_dump artifact streamed into `pg_restore` (custom) or `psql` (plain).

Either way the whole restore is one transaction: `pg_restore --single-transaction` commits only
after the archive's last entry, and a plain dump is wrapped in BEGIN ... COMMIT with the COMMIT
sent only after the last (verified) byte. A failure, a corrupt stream or a killed process leaves
the target as it was. The connection reaches the tools through PG* variables, never argv.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path

import psycopg

# The dump side's helpers: the same libpq environment, tool lookup and stderr handling.
from orion_operator.backup.dump import (
    DumpError,
    _StderrTail,
    _stop,
    find_pg_tool,
    libpq_environment,
)
from orion_operator.restore.database import connect, database_name, first_line, scrub
from orion_operator.restore.errors import RestoreError

# What makes a database "not empty": relations outside the system schemas.
_USER_RELATIONS = """
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1
"""

# Overwriting with a plain dump: it has no DROPs of its own (pg_restore --clean's job for custom
# archives), so the target's objects go first, in the same transaction: every other non-system
# schema whole, and public's contents (public itself stays, with its owner, comment and grants,
# which a dump does not recreate). Names, not OIDs, with IF EXISTS: a CASCADE may have gone first.
PLAIN_OVERWRITE_PREAMBLE = b"""
DO $orion_restore$
DECLARE item record;
BEGIN
  FOR item IN
    SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', nspname) AS statement FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
      AND nspname NOT LIKE 'pg\\_%'
    UNION ALL
    SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', extname) FROM pg_extension
    WHERE extnamespace = 'public'::regnamespace
  LOOP
    EXECUTE item.statement;
  END LOOP;
  FOR item IN
    SELECT format('DROP %s IF EXISTS public.%I CASCADE',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                 ELSE 'TABLE' END,
                  c.relname) AS statement
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT c.relispartition
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
  LOOP
    EXECUTE item.statement;
  END LOOP;
  FOR item IN
    SELECT format('DROP ROUTINE IF EXISTS public.%I(%s) CASCADE', p.proname,
                  pg_get_function_identity_arguments(p.oid)) AS statement
    FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE item.statement;
  END LOOP;
  FOR item IN
    SELECT format('DROP TYPE IF EXISTS public.%I CASCADE', t.typname) AS statement
    FROM pg_type t
    WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE item.statement;
  END LOOP;
END
$orion_restore$;
"""


async def user_relations(database_url: str, limit: int = 5) -> tuple[int, list[str]]:
    """How many tables, views and sequences the database has, and the first few names."""
    conn = await connect(database_url, autocommit=True)
    async with conn:
        try:
            cursor = await conn.execute(_USER_RELATIONS)
            names = [str(row[0]) for row in await cursor.fetchall()]
        except psycopg.Error as error:
            raise RestoreError(
                "DatabaseError",
                f"cannot inspect the target database: {scrub(first_line(error), database_url)}",
            ) from None
    return len(names), names[:limit]


async def check_platform_target(database_url: str, *, overwrite: bool, resumed: bool) -> None:
    """Refuse a non-empty target unless `overwrite`; reads only."""
    if overwrite:
        await user_relations(database_url, limit=0)  # still fail early when unreachable
        return
    count, names = await user_relations(database_url)
    if count == 0:
        return
    database = database_name(database_url)
    shown = ", ".join(names) + (", ..." if count > len(names) else "")
    if resumed:
        raise RestoreError(
            "Interrupted",
            f'an earlier attempt of this restore was interrupted, and database "{database}" is '
            f"not empty now ({count} relations: {shown}). A restore commits all or nothing, so "
            "either the earlier attempt completed before the interruption or the database was "
            "not empty to begin with; check it, and create a new Restore with overwrite: true to "
            "replace it",
        )
    raise RestoreError(
        "TargetNotEmpty",
        f'database "{database}" is not empty ({count} relations: {shown}); nothing was changed. '
        "Restore into an empty database, or set overwrite: true (--overwrite) to replace the "
        "objects in the backup (pg_restore --clean --if-exists; with a plain dump, everything "
        "in the database)",
    )


def _conninfo_dbname(database_url: str) -> str:
    """`dbname='…'`: pg_restore needs -d to restore into a database; the rest comes from PG*."""
    name = database_name(database_url).replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{name}'"


def pg_restore_arguments(database_url: str, *, overwrite: bool) -> list[str]:
    """The runbook's `pg_restore --no-owner`, in one transaction, stopping at the first error."""
    arguments = ["--no-password", "--no-owner", "--single-transaction", "--exit-on-error"]
    if overwrite:
        arguments += ["--clean", "--if-exists"]
    return [*arguments, f"--dbname={_conninfo_dbname(database_url)}"]


def psql_arguments() -> list[str]:
    # -X: no ~/.psqlrc; the script on stdin; its output is not wanted, its errors are.
    return ["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]


async def restore_platform(
    database_url: str,
    fmt: str,
    chunks: AsyncGenerator[bytes, None],
    *,
    overwrite: bool,
    pg_bindir: Path | None = None,
) -> None:
    """Stream `chunks` (a custom archive or a plain SQL dump) into the database, atomically."""
    try:
        environment = libpq_environment(database_url)
        if fmt == "custom":
            tool = "pg_restore"
            argv = [
                str(find_pg_tool(tool, pg_bindir)),
                *pg_restore_arguments(database_url, overwrite=overwrite),
            ]
            prefix, suffix = b"", b""
        elif fmt == "plain":
            tool = "psql"
            argv = [str(find_pg_tool(tool, pg_bindir)), *psql_arguments()]
            prefix = b"BEGIN;\n" + (PLAIN_OVERWRITE_PREAMBLE if overwrite else b"")
            suffix = b"\nCOMMIT;\n"
        else:
            raise RestoreError("ManifestInvalid", f'unknown platform format "{fmt}"')
    except DumpError as error:
        raise RestoreError("RestoreFailed", str(error)) from None
    await _feed(tool, argv, environment, prefix, chunks, suffix, database_url)


async def _feed(
    tool: str,
    argv: list[str],
    environment: dict[str, str],
    prefix: bytes,
    chunks: AsyncGenerator[bytes, None],
    suffix: bytes,
    database_url: str,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    stderr = _StderrTail(process.stderr)
    stdin = process.stdin
    assert stdin is not None
    try:
        stopped_reading = False
        try:
            stdin.write(prefix)
            await stdin.drain()
            async with contextlib.aclosing(chunks) as stream:
                async for chunk in stream:
                    stdin.write(chunk)
                    await stdin.drain()
            stdin.write(suffix)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            stopped_reading = True  # the tool gave up; its exit status and stderr say why
        # Only here, after every verified byte, does the tool see the end of its input. Any
        # exception above skips this: the process is killed below before it can commit.
        if not stopped_reading:
            stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await stdin.wait_closed()
        code = await process.wait()
        if code != 0:
            detail = scrub(await stderr.text(), database_url) or "no message on stderr"
            raise RestoreError(
                "RestoreFailed",
                f"{tool} exited {code}; the restore was rolled back and the target database "
                f"is unchanged: {detail}",
            )
    finally:
        await _stop(process)
        stderr.cancel()
