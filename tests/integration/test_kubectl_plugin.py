"""`kubectl orion status` run as kubectl runs it (a `kubectl-orion` on PATH) against the cluster.

Two namespaces hold the state the operator writes (objects, their status, its Events) for a
day that went well and for one that did not; the operator itself is not watching them, so what
the plugin reads stays as set here. A third test lets the operator run a real Backup and reads
the free space it recorded.
"""

from __future__ import annotations

import datetime
import json
import os
import pty
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    database_secret,
    get_json,
    wait_for,
)

BIN = Path(sys.executable).parent  # the venv's bin, where the package installs kubectl-orion
ORION = "orion.io/v1alpha1"


def now_minus(**delta: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def plugin_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def kubectl_orion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "orion", "status", *args],
        capture_output=True,
        text=True,
        env=plugin_env(),
        timeout=120,
    )


def status_json(*args: str) -> tuple[int, dict[str, Any]]:
    done = kubectl_orion("-o", "json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def lines_of(document: dict[str, Any], namespace: str | None = None) -> dict[str, dict]:
    """item -> line, for the lines about objects in `namespace` (plus the unscoped ones)."""
    found: dict[str, dict] = {}
    for line in document["lines"]:
        obj = line["object"]
        if namespace is None or obj is None or obj["namespace"] == namespace:
            found[line["item"]] = line
    return found


@pytest.fixture
def unwatched_namespace(cluster: str) -> Iterator[str]:
    """A namespace the test operator does not watch (it watches orion-test-*)."""
    name = f"orion-plugin-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def create_with_status(manifest: dict[str, Any], status: dict[str, Any], namespace: str) -> None:
    """The object, then its status through the status subresource, as the operator writes it."""
    applied = apply(manifest, namespace)
    assert applied.returncode == 0, applied.stderr
    kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
    kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def api_deployment_state(namespace: str, *, healthy: bool, connections_in_use: int) -> None:
    state = "ok" if healthy else "down"
    message = "all services connected" if healthy else "timed out after 10 s"
    create_with_status(
        {
            "apiVersion": ORION,
            "kind": "ApiDeployment",
            "metadata": {"name": "orion-api"},
            "spec": {"image": "ghcr.io/example/orion-api:1.0.0"},
        },
        {
            "phase": "Healthy" if healthy else "Down",
            "conditions": [
                {
                    "type": "Healthy",
                    "status": "True" if healthy else "False",
                    "reason": f"Health{state.capitalize()}",
                    "message": message,
                    "lastTransitionTime": now_minus(hours=1),
                }
            ],
            "health": {"state": state, "message": message, "checkedAt": now_minus(seconds=20)},
            "databaseConnections": {
                "inUse": connections_in_use,
                "maxConnections": 100,
                "usedPercent": connections_in_use,
                "checkedAt": now_minus(seconds=30),
            },
        },
        namespace,
    )


def backup_state(namespace: str, *, last_success_hours_ago: float, free_percent: float) -> None:
    create_with_status(
        {
            "apiVersion": ORION,
            "kind": "BackupSchedule",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "template": {"type": "platform"}},
        },
        {"lastSuccessfulTime": now_minus(hours=last_success_hours_ago)},
        namespace,
    )
    total = 50 * 2**30
    create_with_status(
        {
            "apiVersion": ORION,
            "kind": "Backup",
            "metadata": {"name": "nightly-1", "labels": {"orion.io/backup-schedule": "nightly"}},
            "spec": {
                "type": "platform",
                "storage": {"volume": {"path": "/backups", "claimName": "orion-backups"}},
            },
        },
        {
            "phase": "Completed",
            "completedAt": now_minus(hours=last_success_hours_ago),
            "volumeSpace": {
                "freeBytes": int(total * free_percent / 100),
                "totalBytes": total,
                "freePercent": free_percent,
                "measuredAt": now_minus(hours=last_success_hours_ago),
            },
        },
        namespace,
    )


def database_down_event(namespace: str) -> None:
    """The Warning Event the health probe posts with a critical DatabaseDown alert."""
    uid = get_json("apideployment", "orion-api", "-n", namespace)["metadata"]["uid"]
    applied = apply(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"orion-api.{uuid.uuid4().hex[:10]}"},
            "type": "Warning",
            "reason": "DatabaseDown",
            "message": f"DatabaseDown: ApiDeployment {namespace}/orion-api: database down",
            "involvedObject": {
                "apiVersion": ORION,
                "kind": "ApiDeployment",
                "namespace": namespace,
                "name": "orion-api",
                "uid": uid,
            },
            "source": {"component": "kopf"},
            "firstTimestamp": now_minus(hours=3),
            "lastTimestamp": now_minus(hours=2),
            "count": 4,
        },
        namespace,
    )
    assert applied.returncode == 0, applied.stderr


@pytest.fixture
def good_day(unwatched_namespace: str) -> str:
    api_deployment_state(unwatched_namespace, healthy=True, connections_in_use=12)
    backup_state(unwatched_namespace, last_success_hours_ago=5, free_percent=64.0)
    return unwatched_namespace


@pytest.fixture
def bad_day(cluster: str) -> Iterator[str]:
    name = f"orion-plugin-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    api_deployment_state(name, healthy=False, connections_in_use=95)
    backup_state(name, last_success_hours_ago=30, free_percent=9.5)
    database_down_event(name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_kubectl_finds_the_plugin_installed_with_the_package() -> None:
    assert shutil.which("kubectl-orion", path=str(BIN)) is not None
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=plugin_env()
    )
    assert str(BIN / "kubectl-orion") in listed.stdout


def test_a_good_day_is_green_on_every_line_but_5xx_which_is_not_configured(
    good_day: str,
) -> None:
    code, document = status_json("-n", good_day)
    assert code == 0
    assert document["ok"] is True and document["namespace"] == good_day
    statuses = {item: line["status"] for item, line in lines_of(document).items()}
    assert statuses == {
        "health": "ok",
        "criticalAlerts": "ok",
        "backups": "ok",
        "http5xx": "notConfigured",
        "diskSpace": "ok",
        "databaseConnections": "ok",
    }
    disk = lines_of(document)["diskSpace"]
    assert disk["details"]["freePercent"] == 64.0
    assert disk["object"] == {
        "kind": "PersistentVolumeClaim",
        "namespace": good_day,
        "name": "orion-backups",
    }

    text = kubectl_orion("-n", good_day)
    assert text.returncode == 0, text.stderr
    assert "\033[" not in text.stdout  # not a terminal: no colour
    assert f"✓ OK              ApiDeployment {good_day}/orion-api: Healthy" in text.stdout
    assert "NOT CONFIGURED" in text.stdout and "FAIL" not in text.stdout


def test_a_bad_day_is_red_on_every_line_with_the_reason(bad_day: str) -> None:
    code, document = status_json("--namespace", bad_day)
    assert code == 1
    assert document["ok"] is False
    lines = lines_of(document)
    failed = {item for item, line in lines.items() if line["status"] == "fail"}
    assert failed == {"health", "criticalAlerts", "backups", "diskSpace", "databaseConnections"}
    assert "phase Down" in lines["health"]["reason"]
    assert "timed out after 10 s" in lines["health"]["reason"]
    [alert] = lines["criticalAlerts"]["details"]["alerts"]
    assert alert["reason"] == "DatabaseDown" and alert["count"] == 4
    assert alert["object"] == {"kind": "ApiDeployment", "namespace": bad_day, "name": "orion-api"}
    assert "1d6h ago, over 26 h" in lines["backups"]["reason"]
    assert "9.5% free" in lines["diskSpace"]["reason"]
    assert "95 of 100 connections" in lines["databaseConnections"]["reason"]

    text = kubectl_orion("-n", bad_day)
    assert text.returncode == 1
    assert "✗ FAIL" in text.stdout and "5 line(s) need attention." in text.stdout


def test_thresholds_from_the_command_line_move_the_lines(bad_day: str) -> None:
    _, document = status_json(
        "-n",
        bad_day,
        "--backup-max-age-hours",
        "48",
        "--min-free-percent",
        "5",
        "--alert-window-hours",
        "1",
    )
    lines = lines_of(document)
    assert lines["backups"]["status"] == "ok"
    assert lines["diskSpace"]["status"] == "ok"
    assert lines["criticalAlerts"]["status"] == "ok"  # the Event is 2 h old


def test_all_namespaces_shows_both_days_and_fails(good_day: str, bad_day: str) -> None:
    code, document = status_json("-A")
    assert code == 1
    assert document["namespace"] is None
    assert lines_of(document, good_day)["health"]["status"] == "ok"
    assert lines_of(document, bad_day)["health"]["status"] == "fail"


def test_the_context_namespace_is_the_default_and_colour_needs_a_terminal(
    good_day: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(os.environ["KUBECONFIG"], kubeconfig)
    subprocess.run(
        ["kubectl", "config", "set-context", "--current", f"--namespace={good_day}"],
        check=True,
        capture_output=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    # A pseudo-terminal as stdout, as at an interactive shell.
    leader, follower = pty.openpty()
    done = subprocess.run(
        ["kubectl", "orion", "status", "--kubeconfig", str(kubeconfig)],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={k: v for k, v in plugin_env().items() if k != "NO_COLOR"},
        timeout=120,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed: everything was read
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert done.returncode == 0, done.stderr
    text = output.decode()
    assert f"namespace {good_day}" in text
    assert "\033[32m✓ OK" in text


def test_the_operator_records_the_volume_space_the_plugin_reports(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
) -> None:
    apply(database_secret(app_database.url), namespace)
    applied = apply(
        {
            "apiVersion": ORION,
            "kind": "Backup",
            "metadata": {"name": "adhoc"},
            "spec": {"storage": {"volume": {"path": str(tmp_path), "minFreePercent": 1}}},
        },
        namespace,
    )
    assert applied.returncode == 0, applied.stderr

    def recorded() -> dict[str, Any] | None:
        status = get_json("backup", "adhoc", "-n", namespace).get("status", {})
        return status if status.get("volumeSpace") else None

    status = wait_for(recorded, 120, "the Backup's volumeSpace")
    assert status["phase"] == "Completed", status.get("message")
    space = status["volumeSpace"]
    usage = shutil.disk_usage(tmp_path)
    assert space["totalBytes"] == usage.total
    assert abs(space["freePercent"] - 100 * usage.free / usage.total) < 1  # others write too

    _, document = status_json("-n", namespace, "--min-free-percent", "0")
    disk = lines_of(document)["diskSpace"]
    assert disk["status"] == "ok" and disk["details"]["freePercent"] == space["freePercent"]
    assert disk["reason"].startswith(f"{tmp_path}: ")
    _, document = status_json("-n", namespace, "--min-free-percent", "100")
    assert lines_of(document)["diskSpace"]["status"] == "fail"
