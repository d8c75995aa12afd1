"""A real control plane (scripts/cluster), the CRDs, and the operator as a separate process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orion_operator.devenv.kubectl import REPO_ROOT, install_crds, kubectl
from orion_operator.devenv.postgres import free_port
from tests.alert_receivers import (
    HttpReceiver,
    ReceivedRequest,
    SmtpReceiver,
    make_self_signed_certificate,
)

T = TypeVar("T")
# A second test run on the same machine can use its own cluster (ORION_TEST_CLUSTER).
TEST_CLUSTER = os.environ.get("ORION_TEST_CLUSTER", "orion-test")
NAMESPACE_PREFIX = "orion-test-"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


def wait_for(check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def get_json(*args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """The kubeconfig of a fresh local control plane, shut down after the session."""
    env = {**os.environ, "ORION_CLUSTER_NAME": TEST_CLUSTER}
    script = str(REPO_ROOT / "scripts" / "cluster")
    subprocess.run([script, "up"], check=True, env=env)
    kubeconfig = subprocess.run(
        [script, "kubeconfig"], check=True, env=env, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    os.environ["KUBECONFIG"] = kubeconfig
    install_crds()
    try:
        yield kubeconfig
    finally:
        if not os.environ.get("ORION_KEEP_CLUSTER"):
            subprocess.run([script, "down"], check=False, env=env)


class ThreadedHttpReceiver:
    """The alert tests' HTTP receiver on its own event loop thread, for these synchronous tests."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.receiver = asyncio.run_coroutine_threadsafe(HttpReceiver().start(), self._loop).result(
            10
        )

    def url(self, path: str) -> str:
        return self.receiver.url(path)

    def to(self, path: str) -> list[ReceivedRequest]:
        return list(self.receiver.to(path))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass(frozen=True)
class AlertReceivers:
    http: ThreadedHttpReceiver
    smtp: SmtpReceiver
    smtp_password: str
    webhook_secret: str
    slack_path: str
    certificate_path: Path


@pytest.fixture(scope="session")
def alert_receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertReceivers]:
    certificate = make_self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))
    password = "smtp-" + uuid.uuid4().hex
    smtp = SmtpReceiver(
        certificate=certificate, starttls=True, credentials=("alerts@orion.test", password)
    ).start()
    http = ThreadedHttpReceiver()
    receivers = AlertReceivers(
        http=http,
        smtp=smtp,
        smtp_password=password,
        webhook_secret="whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode(),
        slack_path=f"/services/T000/B000/{uuid.uuid4().hex}",
        certificate_path=certificate.cert_path,
    )
    try:
        yield receivers
    finally:
        http.stop()
        smtp.stop()


def alert_environment(receivers: AlertReceivers) -> dict[str, str]:
    """The runbook's variables, pointed at the local receivers."""
    return {
        "ALERTS_ENABLED": "true",
        "ALERT_EMAIL": "oncall@orion.test",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(receivers.smtp.port),
        "SMTP_USER": "alerts@orion.test",
        "SMTP_PASS": receivers.smtp_password,
        "SMTP_FROM": "Orion <alerts@orion.test>",
        "SLACK_WEBHOOK_URL": receivers.http.url(receivers.slack_path),
        "ALERT_WEBHOOK_URL": receivers.http.url("/orion-alerts"),
        "ALERT_WEBHOOK_SECRET": receivers.webhook_secret,
        # The SMTP receiver's certificate is self-signed: trust it the standard way.
        "SSL_CERT_FILE": str(receivers.certificate_path),
    }


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    liveness_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"operator exited:\n{self.log()[-3000:]}"


def start_operator(
    kubeconfig: str,
    receivers: AlertReceivers,
    log_path: Path,
    namespace_pattern: str = f"{NAMESPACE_PREFIX}*",
    standalone: bool = True,
    extra_env: dict[str, str] | None = None,
) -> OperatorProcess:
    """`orion-operator run --standalone` watching `namespace_pattern`, once it is watching.

    Two operators must never watch the same namespace: both would handle its objects.
    """
    metrics_port, liveness_port = free_port(), free_port()
    env = {
        **os.environ,
        **alert_environment(receivers),
        "KUBECONFIG": kubeconfig,
        "ORION_METRICS_PORT": str(metrics_port),
        "ORION_METRICS_HOST": "127.0.0.1",
        # Fast retries so tests see recovery quickly; the backoff still doubles.
        "ORION_RETRY_INITIAL_DELAY_SECONDS": "1",
        "ORION_RETRY_MAX_DELAY_SECONDS": "4",
        **(extra_env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orion_operator",
                "run",
                *(["--standalone"] if standalone else []),
                "--verbose",
                "-n",
                namespace_pattern,
                "--liveness",
                f"http://127.0.0.1:{liveness_port}/healthz",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
    running = OperatorProcess(process, log_path, metrics_port, liveness_port)
    wait_for(
        lambda: "Starting the watch-stream" in running.log() or process.poll() is not None,
        timeout=60,
        what="the operator to start watching",
    )
    running.assert_running()
    return running


def stop_operator(running: OperatorProcess) -> None:
    """Ask the operator to stop (SIGINT, as Ctrl-C); kill it if it does not within 20 s."""
    if running.process.poll() is not None:
        return
    running.process.send_signal(signal.SIGINT)
    try:
        running.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


@pytest.fixture(scope="session")
def operator(
    cluster: str, alert_receivers: AlertReceivers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    running = start_operator(
        cluster, alert_receivers, tmp_path_factory.mktemp("operator") / "operator.log"
    )
    try:
        yield running
    finally:
        stop_operator(running)


@pytest.fixture
def namespace(cluster: str) -> Iterator[str]:
    name = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(manifest: dict[str, Any], namespace: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)


def database_secret(url: str, name: str = "orion-database", key: str = "DATABASE_URL") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {key: url},
    }


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: dict[str, Any], type: str = "Ready") -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type), None)
