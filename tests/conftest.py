"""Fixtures on real parts: PostgreSQL from Debian's packages, one database per test."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from orion_operator.devenv.postgres import LocalPostgres
from orion_operator.devenv.redis import LocalRedis

FIXTURES = Path(__file__).parent / "fixtures"
APP_ROLE = "orion"
TEMPLATE = "orion_template"


@dataclass
class AppDatabase:
    """A fresh database with the Orion schema, owned by a password-authenticated role."""

    name: str
    url: str
    password: str
    server: LocalPostgres

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql, params)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[LocalPostgres, str]]:
    server = LocalPostgres().start()
    password = "pw-" + secrets.token_hex(12)
    server.create_role(APP_ROLE, password)
    server.psql(f'ALTER ROLE "{APP_ROLE}" CREATEDB')
    server.create_database(TEMPLATE, owner=APP_ROLE)
    server.psql_file(FIXTURES / "orion_schema.sql", TEMPLATE, APP_ROLE)
    try:
        yield server, password
    finally:
        server.stop()


@pytest.fixture
def app_database(postgres_server: tuple[LocalPostgres, str]) -> Iterator[AppDatabase]:
    server, password = postgres_server
    name = f"orion_{uuid.uuid4().hex[:10]}"
    server.create_database(name, owner=APP_ROLE, template=TEMPLATE)
    yield AppDatabase(name, server.url_for(name, APP_ROLE, password), password, server)
    server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """One password-protected Redis for the session; tests that stop it use `disposable_redis`."""
    server = LocalRedis(password="pw-" + secrets.token_hex(12)).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    """The session's Redis, emptied for this test; the URL carries the password."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def disposable_redis() -> Iterator[LocalRedis]:
    """A password-protected Redis of this test's own, to stop, pause and start again."""
    server = LocalRedis(password="pw-" + secrets.token_hex(12)).start()
    try:
        yield server
    finally:
        server.close()


# Shared with the integration tests: moto's S3 server on loopback.
from tests.s3_server import s3_endpoint  # noqa: E402, F401
