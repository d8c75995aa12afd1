"""Backups under faults, end to end: PostgreSQL stopping mid-dump, S3 unreachable or going away
mid-upload, the operator killed mid-run. Each must end Failed with a reason (or resume and
complete), and leave no partial artifact and no open multipart upload behind.

The database here is big enough that pg_dump runs for seconds, on a PostgreSQL server of the
test's own, so a fault can be injected while the dump is provably under way: the hidden partial
file or the multipart upload is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orion_operator.devenv.kubectl import kubectl
from orion_operator.devenv.postgres import LocalPostgres, free_port
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.integration.test_backup import backup, finished
from tests.s3_server import s3_client

# About 130 MB of incompressible-ish text: pg_dump needs a few seconds, longer on a busy machine.
NOISE_ROWS = 150_000
NOISE_SQL = f"""CREATE TABLE "Noise" AS
    SELECT g AS id,
           (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 28) i) AS body
    FROM generate_series(1, {NOISE_ROWS}) g"""
S3_SECRET = "s3-secret-" + secrets.token_hex(8)


@dataclass
class BigDatabase:
    server: LocalPostgres
    url: str
    password: str


@pytest.fixture
def big_database() -> Iterator[BigDatabase]:
    """A PostgreSQL server of this test's own (free to stop), with a database of ~130 MB."""
    server = LocalPostgres().start()
    try:
        password = "pw-" + secrets.token_hex(12)
        server.create_role("orion", password)
        server.create_database("big", owner="orion")
        server.psql(NOISE_SQL, database="big", user="orion")
        yield BigDatabase(server, server.url_for("big", "orion", password), password)
    finally:
        server.stop()


class TcpGate:
    """A TCP forwarder to a local port that the test can close (open connections cut, new ones
    refused) and open again on the same port: an S3 endpoint going away and coming back with
    its state intact."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = ("127.0.0.1", target_port)
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.open()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in [*([listener] if listener else []), *connections]:
            # shutdown() wakes the threads blocked in accept() or recv() on it; close() does not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def s3_gate(s3_endpoint: str) -> Iterator[TcpGate]:
    gate = TcpGate(int(s3_endpoint.rsplit(":", 1)[1]))
    yield gate
    gate.close()


@dataclass
class Bucket:
    client: Any
    name: str

    def open_uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    def object_keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[Bucket]:
    """A fresh bucket on the session's S3 server, emptied afterwards (moto keeps it in memory)."""
    client = s3_client(s3_endpoint)
    created = Bucket(client, f"orion-faults-{uuid.uuid4().hex[:8]}")
    client.create_bucket(Bucket=created.name)
    yield created
    for upload in client.list_multipart_uploads(Bucket=created.name).get("Uploads", []):
        client.abort_multipart_upload(
            Bucket=created.name, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    for key in created.object_keys():
        client.delete_object(Bucket=created.name, Key=key)


def s3_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": "faults", "AWS_SECRET_ACCESS_KEY": S3_SECRET},
    }


def s3_storage(bucket: str, endpoint: str) -> dict[str, Any]:
    return {
        "s3": {
            "bucket": bucket,
            "prefix": "faults",
            "endpoint": endpoint,
            "region": "us-east-1",
            "credentialsSecret": "s3-creds",
        }
    }


def volume_storage(directory: Path) -> dict[str, Any]:
    return {"volume": {"path": str(directory), "minFreePercent": 1}}


def files_under(directory: Path) -> list[str]:
    return sorted(
        str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()
    )


def partial_file(directory: Path) -> Path | None:
    """The hidden partial artifact, once pg_dump's output has started to reach it."""
    return next((path for path in directory.rglob(".*.partial") if path.stat().st_size > 0), None)


def events_of(namespace: str, name: str) -> list[dict[str, Any]]:
    listed = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [e for e in listed["items"] if e["involvedObject"].get("name") == name]


def assert_failed_with(
    obj: dict[str, Any], reason: str, *fragments: str, secrets_: tuple[str, ...] = ()
) -> str:
    """The Backup failed for `reason`, said so in status, its Ready condition and a Warning
    Event, and never showed a secret; returns the message."""
    status = obj["status"]
    assert status["phase"] == "Failed", status
    ready = condition(obj)
    assert ready is not None
    assert ready["status"] == "False" and ready["reason"] == reason, ready
    message = status["message"]
    assert ready["message"] == message
    for fragment in fragments:
        assert fragment in message, message
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    warning = wait_for(
        lambda: [e for e in events_of(namespace, name) if e["reason"] == "BackupFailed"],
        what=f"the BackupFailed Event of {name}",
    )
    assert warning[0]["type"] == "Warning" and warning[0]["message"].startswith(f"{reason}: ")
    for secret in secrets_:
        assert secret not in json.dumps(obj)
        assert secret not in json.dumps(warning)
    return str(message)


# ---------------------------------------------------------------------------------------------
# PostgreSQL stopped while pg_dump reads it


def test_postgres_stopped_mid_dump_fails_the_backup_and_leaves_no_partial_file(
    operator: OperatorProcess, namespace: str, big_database: BigDatabase, tmp_path: Path
):
    apply(database_secret(big_database.url), namespace)
    apply(backup("mid-dump", executor="inline", storage=volume_storage(tmp_path)), namespace)

    wait_for(lambda: partial_file(tmp_path), timeout=60, what="pg_dump's output to arrive")
    big_database.server.stop()

    obj = finished("mid-dump", namespace)
    assert_failed_with(
        obj,
        "DumpFailed",
        "pg_dump exited 1",
        "server closed the connection unexpectedly",
        secrets_=(big_database.password,),
    )
    assert files_under(tmp_path) == []


def test_postgres_stopped_mid_upload_aborts_the_multipart_upload(
    operator: OperatorProcess,
    namespace: str,
    big_database: BigDatabase,
    bucket: Bucket,
    s3_endpoint: str,
):
    apply(database_secret(big_database.url), namespace)
    apply(s3_secret(), namespace)
    apply(
        backup("mid-upload", executor="inline", storage=s3_storage(bucket.name, s3_endpoint)),
        namespace,
    )

    wait_for(bucket.open_uploads, timeout=60, what="the multipart upload to start")
    big_database.server.stop()

    obj = finished("mid-upload", namespace)
    assert_failed_with(
        obj,
        "DumpFailed",
        "pg_dump exited 1",
        "server closed the connection unexpectedly",
        secrets_=(big_database.password, S3_SECRET),
    )
    assert bucket.open_uploads() == []
    assert bucket.object_keys() == []


# ---------------------------------------------------------------------------------------------
# S3 unreachable


def test_unreachable_s3_endpoint_fails_naming_the_endpoint_without_the_secret(
    operator: OperatorProcess, namespace: str, big_database: BigDatabase
):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    apply(database_secret(big_database.url), namespace)
    apply(s3_secret(), namespace)
    apply(
        backup("no-s3", executor="inline", storage=s3_storage("orion-nowhere", closed)), namespace
    )

    obj = finished("no-s3", namespace, timeout=120)
    assert_failed_with(
        obj,
        "StorageUnreachable",
        'S3 bucket "orion-nowhere" not reachable at',
        closed,
        secrets_=(S3_SECRET, big_database.password),
    )


def test_s3_going_away_mid_upload_fails_and_the_upload_is_aborted_once_it_is_back(
    operator: OperatorProcess,
    namespace: str,
    big_database: BigDatabase,
    bucket: Bucket,
    s3_gate: TcpGate,
):
    apply(database_secret(big_database.url), namespace)
    apply(s3_secret(), namespace)
    apply(
        backup("s3-gone", executor="inline", storage=s3_storage(bucket.name, s3_gate.endpoint)),
        namespace,
    )

    wait_for(bucket.open_uploads, timeout=60, what="the multipart upload to start")
    s3_gate.close()

    obj = finished("s3-gone", namespace, timeout=120)
    assert_failed_with(
        obj,
        "StorageUnreachable",
        f'S3 bucket "{bucket.name}" not reachable at',
        s3_gate.endpoint,
        secrets_=(S3_SECRET, big_database.password),
    )
    assert bucket.object_keys() == []

    # The abort could not reach S3 either: it is retried, without a second run or alert.
    assert obj["status"].get("cleanupPending")
    s3_gate.open()
    wait_for(lambda: bucket.open_uploads() == [], timeout=60, what="the upload to be aborted")
    wait_for(
        lambda: not get_json("backup", "s3-gone", "-n", namespace)["status"].get("cleanupPending"),
        what="cleanupPending to clear",
    )
    after = get_json("backup", "s3-gone", "-n", namespace)["status"]
    assert after["phase"] == "Failed" and after["attempts"] == 1
    assert bucket.object_keys() == []


# ---------------------------------------------------------------------------------------------
# The operator killed mid-run


@dataclass
class RestartableOperator:
    """An operator of this test's own, on a namespace the session's operator does not watch."""

    kubeconfig: str
    receivers: AlertReceivers
    namespace: str
    directory: Path
    starts: int = 0
    current: OperatorProcess | None = None

    def start(self) -> OperatorProcess:
        self.starts += 1
        log_path = self.directory / f"operator-{self.starts}.log"
        self.current = start_operator(self.kubeconfig, self.receivers, log_path, self.namespace)
        return self.current

    def kill(self) -> None:
        """SIGKILL: no clean-up handler runs, exactly as when a node dies or the OOM killer hits."""
        assert self.current is not None
        self.current.process.kill()
        self.current.process.wait()


@pytest.fixture
def chaos_operator(
    cluster: str, alert_receivers: AlertReceivers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RestartableOperator]:
    # Outside the session operator's orion-test-* pattern: only this operator handles it.
    name = f"orion-chaos-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    restartable = RestartableOperator(
        cluster, alert_receivers, name, tmp_path_factory.mktemp("chaos-operator")
    )
    try:
        yield restartable
    finally:
        if restartable.current is not None:
            stop_operator(restartable.current)
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_operator_killed_mid_backup_to_a_volume_resumes_and_completes(
    chaos_operator: RestartableOperator, big_database: BigDatabase, tmp_path: Path
):
    namespace = chaos_operator.namespace
    chaos_operator.start()
    apply(database_secret(big_database.url), namespace)
    apply(backup("killed", executor="inline", storage=volume_storage(tmp_path)), namespace)

    wait_for(lambda: partial_file(tmp_path), timeout=60, what="pg_dump's output to arrive")
    chaos_operator.kill()
    # What a user sees now: Running, with nobody running it.
    assert get_json("backup", "killed", "-n", namespace)["status"]["phase"] == "Running"

    chaos_operator.start()
    obj = finished("killed", namespace, timeout=120)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["attempts"] == 2
    assert condition(obj)["reason"] == "Completed"
    artifact = Path(status["location"].removeprefix("file://"))
    manifest_path = Path(status["manifest"].removeprefix("file://"))
    manifest = json.loads(manifest_path.read_text())
    assert sha256_of(artifact) == status["sha256"] == manifest["sha256"]
    assert artifact.stat().st_size == status["sizeBytes"] == manifest["sizeBytes"]
    assert manifest["runId"] == obj["metadata"]["uid"]
    assert files_under(tmp_path) == sorted(
        str(path.relative_to(tmp_path)) for path in (artifact, manifest_path)
    )  # the interrupted attempt's partial file is gone
    wait_for(
        lambda: [e for e in events_of(namespace, "killed") if e["reason"] == "BackupCompleted"],
        what="the BackupCompleted Event",
    )


def test_operator_killed_mid_upload_resumes_completes_and_leaves_no_open_upload(
    chaos_operator: RestartableOperator,
    big_database: BigDatabase,
    bucket: Bucket,
    s3_endpoint: str,
):
    namespace = chaos_operator.namespace
    chaos_operator.start()
    apply(database_secret(big_database.url), namespace)
    apply(s3_secret(), namespace)
    apply(
        backup("killed", executor="inline", storage=s3_storage(bucket.name, s3_endpoint)),
        namespace,
    )

    wait_for(bucket.open_uploads, timeout=60, what="the multipart upload to start")
    chaos_operator.kill()
    assert get_json("backup", "killed", "-n", namespace)["status"]["phase"] == "Running"
    assert len(bucket.open_uploads()) == 1  # what the killed run left

    chaos_operator.start()
    obj = finished("killed", namespace, timeout=120)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["attempts"] == 2
    key = status["location"].removeprefix(f"s3://{bucket.name}/")
    body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    manifest = json.loads(
        bucket.client.get_object(Bucket=bucket.name, Key=f"{key}.manifest.json")["Body"].read()
    )
    assert hashlib.sha256(body).hexdigest() == status["sha256"] == manifest["sha256"]
    assert len(body) == status["sizeBytes"]
    assert bucket.open_uploads() == []
    assert sorted(bucket.object_keys()) == [key, f"{key}.manifest.json"]
    wait_for(
        lambda: [e for e in events_of(namespace, "killed") if e["reason"] == "BackupCompleted"],
        what="the BackupCompleted Event",
    )
