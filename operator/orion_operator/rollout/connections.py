"""Reading PostgreSQL's connection use: pg_stat_activity against max_connections."""

from __future__ import annotations

from orion_operator.rollout.scaling import ConnectionUsage
from orion_operator.tenancy.database import connect

# Client backends only (not autovacuum or WAL processes), and not this very connection.
USAGE_QUERY = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
       current_setting('max_connections')::int
FROM pg_stat_activity
"""


async def read_connection_usage(url: str, *, connect_timeout_seconds: int = 5) -> ConnectionUsage:
    """Raises `DatabaseUnavailable` (redacted message) when the server cannot be reached."""
    async with connect(url, connect_timeout_seconds=connect_timeout_seconds) as connection:
        cursor = await connection.execute(USAGE_QUERY)
        row = await cursor.fetchone()
    assert row is not None  # an aggregate always returns one row
    return ConnectionUsage(in_use=int(row[0]), max_connections=int(row[1]))
