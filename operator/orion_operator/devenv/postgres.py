"""A throwaway PostgreSQL server from the machine's Debian packages, on 127.0.0.1."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_bindir() -> Path:
    """The newest server installation under /usr/lib/postgresql (Debian's layout), or $PG_BINDIR."""
    if explicit := os.environ.get("PG_BINDIR"):
        return Path(explicit)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL server found under /usr/lib/postgresql; run scripts/install first"
        )
    return candidates[-1].parent


@dataclass
class LocalPostgres:
    """initdb + pg_ctl in a temporary directory; `url_for()` gives password-authenticated URLs."""

    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=find_bindir)
    datadir: Path = field(init=False)
    _root: Path = field(init=False)

    def __post_init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="orion-pg-"))
        self.datadir = self._root / "data"

    # PostgreSQL refuses to run as root: when we are root, run its tools as the postgres user.
    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", SUPERUSER, "--", *argv]

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_server_user(argv),
            check=True,
            capture_output=True,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )

    def start(self) -> LocalPostgres:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self._root, user.pw_uid, user.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self._root}",
                # A disposable server: durability traded for speed.
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-l",
                str(self._root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        return self

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            pg_ctl = str(self.bindir / "pg_ctl")
            self._run([pg_ctl, "-D", str(self.datadir), "-m", "immediate", "stop"])
        shutil.rmtree(self._root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres", user: str = SUPERUSER) -> str:
        """Run SQL over the Unix socket (trusted there); returns psql's unaligned output."""
        return self._run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self._root),
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-At",
                "-c",
                sql,
            ]
        ).stdout

    def psql_file(self, path: Path, database: str, user: str = SUPERUSER) -> None:
        self._run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self._root),
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-f",
                "-",
            ],
            input=path.read_text(),
        )

    def create_role(self, name: str, password: str) -> None:
        self.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")

    def create_database(self, name: str, owner: str, template: str = "template1") -> None:
        self.psql(f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE "{template}"')

    def url_for(self, database: str, user: str, password: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"
