"""Backups end to end: kubectl apply a Backup, the operator dumps to a volume or S3 and reports."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import subprocess
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    tenant,
    wait_for,
)


def backup(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": name},
        "spec": spec,
    }


def finished(name: str, namespace: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json("backup", name, "-n", namespace)
        return obj if obj.get("status", {}).get("phase") in ("Completed", "Failed") else None

    return wait_for(check, timeout, f"Backup {name} to finish")


def seed(app_database: AppDatabase) -> None:
    app_database.execute(
        """INSERT INTO "Tenant" (id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');
           INSERT INTO "User" (id, email, "tenantId") VALUES
             ('u1', 'a@acme', 'acme'), ('u2', 'b@acme', 'acme'), ('u3', 'c@globex', 'globex');
           INSERT INTO "Product" (id, "tenantId", sku, name) VALUES
             ('p1', 'acme', 'A-1', 'Anvil, "heavy"'), ('p2', 'globex', 'G-1', 'Gadget');"""
    )


def test_platform_backup_to_a_volume_is_complete_checksummed_and_restorable(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    applied = apply(
        backup("nightly", storage={"volume": {"path": str(tmp_path), "minFreePercent": 1}}),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr

    obj = finished("nightly", namespace)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert condition(obj)["status"] == "True"
    artifact = Path(status["location"].removeprefix("file://"))
    assert artifact.parent.parent == tmp_path
    data = artifact.read_bytes()
    assert status["sizeBytes"] == len(data)
    assert status["sha256"] == hashlib.sha256(data).hexdigest()
    manifest = json.loads(Path(status["manifest"].removeprefix("file://")).read_text())
    assert manifest["sha256"] == status["sha256"]
    assert manifest["kind"] == "platform" and manifest["format"] == "custom"
    assert status["pgDumpVersion"] and status["serverVersion"]
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]

    # The artifact restores (the runbook's pg_restore) into a fresh database with the same rows.
    server = app_database.server
    restored = f"restored_{uuid.uuid4().hex[:8]}"
    server.create_database(restored, owner="orion")
    subprocess.run(
        [
            str(server.bindir / "pg_restore"),
            "--no-owner",
            "-d",
            app_database.url.rsplit("/", 1)[0] + f"/{restored}",
            str(artifact),
        ],
        check=True,
        capture_output=True,
    )
    count = server.psql('SELECT count(*) FROM "User"', database=restored)
    assert count.strip() == "3"

    # Re-applying or resyncing never runs it twice.
    assert (
        apply(
            backup("nightly", storage={"volume": {"path": str(tmp_path), "minFreePercent": 1}}),
            namespace,
        ).returncode
        == 0
    )
    assert get_json("backup", "nightly", "-n", namespace)["status"]["attempts"] == 1

    # The metric a Prometheus rule would alert on ("backup older than 26 h").
    page = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics").read()
    samples = [
        sample
        for family in text_string_to_metric_families(page.decode())
        if family.name == "orion_backup_last_success_timestamp_seconds"
        for sample in family.samples
    ]
    completed_at = datetime.datetime.fromisoformat(status["completedAt"].replace("Z", "+00:00"))
    ours = [s for s in samples if s.labels["namespace"] == namespace]
    assert [s.value for s in ours] == [pytest.approx(completed_at.timestamp(), abs=1)]
    assert ours[0].labels["type"] == "platform" and ours[0].labels["schedule"] == ""


def test_tenant_backup_zip_holds_only_that_tenants_rows(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(tenant("acme"), namespace)
    apply(
        backup(
            "acme-now",
            type="tenant",
            tenantRef={"name": "acme"},
            storage={"volume": {"path": str(tmp_path), "minFreePercent": 1}},
        ),
        namespace,
    )
    status = finished("acme-now", namespace)["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["rowCounts"]["User"] == 2
    archive = zipfile.ZipFile(
        io.BytesIO(Path(status["location"].removeprefix("file://")).read_bytes())
    )
    users = archive.read("User.csv").decode()
    assert "a@acme" in users and "b@acme" in users and "globex" not in users
    assert "globex" not in archive.read("Product.csv").decode()


def test_platform_backup_to_s3(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, s3_endpoint: str
):
    seed(app_database)
    bucket = f"orion-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret",
    )
    s3.create_bucket(Bucket=bucket)
    apply(database_secret(app_database.url), namespace)
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test-secret"},
        },
        namespace,
    )
    apply(
        backup(
            "to-s3",
            format="plain",
            storage={
                "s3": {
                    "bucket": bucket,
                    "prefix": "orion",
                    "endpoint": s3_endpoint,
                    "region": "us-east-1",
                    "credentialsSecret": "s3-creds",
                }
            },
        ),
        namespace,
    )
    status = finished("to-s3", namespace)["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["location"].startswith(f"s3://{bucket}/orion/")
    key = status["location"].removeprefix(f"s3://{bucket}/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == status["sha256"]
    assert b'CREATE TABLE public."Tenant"' in body
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_wrong_password_fails_with_a_reason_no_artifact_and_a_critical_alert(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
    tmp_path: Path,
):
    wrong = app_database.url.replace(app_database.password, "not-the-password")
    apply(database_secret(wrong), namespace)
    apply(
        backup("doomed", storage={"volume": {"path": str(tmp_path), "minFreePercent": 1}}),
        namespace,
    )
    obj = finished("doomed", namespace)
    assert obj["status"]["phase"] == "Failed"
    assert "password authentication failed" in obj["status"]["message"]
    assert "not-the-password" not in json.dumps(obj)
    assert list(tmp_path.rglob("*.dump")) == [] and list(tmp_path.rglob("*partial*")) == []
    wait_for(
        lambda: any(
            json.loads(r.body)["object"]["name"] == "doomed"
            and json.loads(r.body)["severity"] == "critical"
            for r in alert_receivers.http.to("/orion-alerts")
        ),
        what="the BackupFailed alert",
    )
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "BackupFailed" in events


def test_bad_backups_are_rejected_at_apply_time(operator: OperatorProcess, namespace: str):
    no_tenant = apply(backup("b1", type="tenant"), namespace)
    assert no_tenant.returncode != 0
    assert "tenant backups need spec.tenantRef" in no_tenant.stderr
    bad_format = apply(backup("b2", format="tar"), namespace)
    assert bad_format.returncode != 0 and "spec.format" in bad_format.stderr
    both = apply(backup("b3", storage={"volume": {}, "s3": {"bucket": "abc"}}), namespace)
    assert both.returncode != 0 and "one of volume or s3" in both.stderr
    negative = apply(backup("b4", storage={"volume": {"minFreePercent": -1}}), namespace)
    assert negative.returncode != 0 and "spec.storage.volume.minFreePercent" in negative.stderr
