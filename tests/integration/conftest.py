"""A real control plane (scripts/cluster), the CRDs, and the operator as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orion_operator.devenv.kubectl import REPO_ROOT, install_crds, kubectl

T = TypeVar("T")
TEST_CLUSTER = "orion-test"
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


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"operator exited:\n{self.log()[-3000:]}"


@pytest.fixture(scope="session")
def operator(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": cluster,
        # Fast retries so tests see recovery quickly; the backoff still doubles.
        "ORION_RETRY_INITIAL_DELAY_SECONDS": "1",
        "ORION_RETRY_MAX_DELAY_SECONDS": "4",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orion_operator",
                "run",
                "--standalone",
                "--verbose",
                "-n",
                f"{NAMESPACE_PREFIX}*",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
    running = OperatorProcess(process, log_path)
    wait_for(
        lambda: "Starting the watch-stream" in running.log() or process.poll() is not None,
        timeout=60,
        what="the operator to start watching",
    )
    running.assert_running()
    try:
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
