"""A throwaway Redis server from the machine's Debian packages, on 127.0.0.1.

No persistence (nothing is written to disk), an optional password, and a port that survives
`stop()` / `start()`, so tests can take Redis away and bring it back where clients expect it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis

from orion_operator.devenv.postgres import free_port

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


def find_redis_server() -> str:
    """`redis-server` from $REDIS_SERVER, the PATH or Debian's /usr/bin."""
    if explicit := os.environ.get("REDIS_SERVER"):
        return explicit
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if found is None:
        raise RuntimeError("no redis-server found on the PATH; run scripts/install first")
    return found


@dataclass
class LocalRedis:
    """One redis-server process in a temporary directory; `url` includes the password if any."""

    password: str | None = None
    port: int = field(default_factory=free_port)
    executable: str = field(default_factory=find_redis_server)
    _root: Path = field(init=False)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="orion-redis-"))

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        # A config file (mode 0600) keeps the password out of the process list.
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f'dir "{self._root}"',
            f'logfile "{self._root / "redis.log"}"',
            'save ""',
            "appendonly no",
            "daemonize no",
            "protected-mode yes",
        ]
        if self.password:
            escaped = self.password.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'requirepass "{escaped}"')
        config = self._root / "redis.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> LocalRedis:
        """Start (or start again, on the same port) and wait until PING answers."""
        if self.running:
            return self
        self._root.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [self.executable, str(self._write_config())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited on start: {self._log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server not ready within {START_TIMEOUT_SECONDS:g}s: "
                        f"{self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server; the port and directory are kept so `start()` brings it back."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = (self._root / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()
