"""The job executor on the real control plane, and the command its Job runs, run for real.

kwok fakes pods: a Job's pod "succeeds" without running anything. So the honest test is in two
halves. The nodes are cordoned, the operator creates the Job (its pod stays Pending), the test
checks the Job against the API server and then runs exactly the Job's command line, with the
Job's env resolved from the Secrets, against PostgreSQL and moto's S3. Then the nodes are
uncordoned, kwok completes the pod, and the operator must find this run's manifest and report
Completed. A Job that "succeeds" without writing anything must end Failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    wait_for,
)
from tests.integration.test_backup import backup, finished, seed

ORION_OPERATOR = str(Path(sys.executable).parent / "orion-operator")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "job-test", "AWS_SECRET_ACCESS_KEY": "job-test-secret-value"}


@pytest.fixture
def bucket(s3_endpoint: str) -> tuple[Any, str]:
    name = f"orion-job-{uuid.uuid4().hex[:8]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)
    return client, name


@pytest.fixture
def cordoned(cluster: str) -> Iterator[list[str]]:
    """Every node unschedulable, so Job pods wait in Pending until `uncordon`."""
    nodes = kubectl("get", "nodes", "-o", "name").stdout.split()
    for node in nodes:
        kubectl("cordon", node)
    yield nodes
    for node in nodes:
        kubectl("uncordon", node, check=False)


def s3_backup(name: str, bucket: str, endpoint: str, **spec: Any) -> dict[str, Any]:
    storage = {
        "s3": {
            "bucket": bucket,
            "prefix": "jobs",
            "endpoint": endpoint,
            "region": "us-east-1",
            "credentialsSecret": "s3-creds",
        }
    }
    return backup(name, executor="job", storage=storage, **spec)


def s3_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-creds"},
        "stringData": S3_KEYS,
    }


def secret_value(namespace: str, name: str, key: str) -> str:
    data = get_json("secret", name, "-n", namespace)["data"]
    return base64.b64decode(data[key]).decode()


def resolved_env(container: dict[str, Any], namespace: str) -> dict[str, str]:
    """What the kubelet would give the container: values and secretKeyRefs resolved."""
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secret_value(namespace, ref["name"], ref["key"])
    return env


def test_a_job_backup_runs_the_jobs_own_command_and_completes_from_its_manifest(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    s3_endpoint: str,
    bucket: tuple[Any, str],
    cordoned: list[str],
    tmp_path: Path,
):
    s3, bucket_name = bucket
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(s3_secret(), namespace)
    applied = apply(
        s3_backup(
            "via-job",
            bucket_name,
            s3_endpoint,
            deletionPolicy="Delete",
            job={"backoffLimit": 3, "activeDeadlineSeconds": 900},
        ),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr
    uid = get_json("backup", "via-job", "-n", namespace)["metadata"]["uid"]

    job = wait_for(lambda: get_json("jobs", "-n", namespace)["items"], what="the backup Job")[0]
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Backup",
        "via-job",
        uid,
        True,
    )
    assert job["spec"]["backoffLimit"] == 3 and job["spec"]["activeDeadlineSeconds"] == 900
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"] == ["orion-operator", "backup-run"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    env_refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"]}
    assert env_refs["DATABASE_URL"] == {"name": "orion-database", "key": "DATABASE_URL"}
    assert env_refs["AWS_SECRET_ACCESS_KEY"]["name"] == "s3-creds"
    # No secret in the Job object: not the URL, the password or the S3 key.
    job_text = json.dumps(job)
    for secret in (app_database.url, app_database.password, S3_KEYS["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in job_text

    running = get_json("backup", "via-job", "-n", namespace)["status"]
    assert (running["phase"], running["job"]) == ("Running", job["metadata"]["name"])
    pods = wait_for(
        lambda: get_json("pods", "-n", namespace, "-l", f"job-name={job['metadata']['name']}")[
            "items"
        ],
        what="the Job's pod",
    )
    assert pods[0]["status"]["phase"] == "Pending"  # cordoned: nothing has run it

    # Run exactly what the pod would run.
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    ran = subprocess.run(
        [
            ORION_OPERATOR,
            *container["command"][1:],
            *container["args"],
            *("--termination-log", str(termination_log)),
        ],
        env={**os.environ, **resolved_env(container, namespace)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    printed = json.loads(ran.stdout.strip().splitlines()[-1])
    assert printed["outcome"] == "completed"
    assert termination_log.read_text() == ""

    for node in cordoned:
        kubectl("uncordon", node)
    obj = finished("via-job", namespace, timeout=120)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert condition(obj)["reason"] == "Completed"
    assert status["sha256"] == printed["sha256"] and status["location"] == printed["uri"]
    key = status["location"].removeprefix(f"s3://{bucket_name}/")
    body = s3.get_object(Bucket=bucket_name, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == status["sha256"] and len(body) == status["sizeBytes"]
    manifest = json.loads(
        s3.get_object(Bucket=bucket_name, Key=key + ".manifest.json")["Body"].read()
    )
    assert manifest["runId"] == uid and manifest["source"] == f"{namespace}/via-job"
    listed = subprocess.run(
        [str(app_database.server.bindir / "pg_restore"), "--list"],
        input=body,
        capture_output=True,
        check=True,
    )
    assert b"TABLE public Tenant " in listed.stdout
    assert s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads", []) == []

    # deletionPolicy Delete: deleting the Backup removes the artifact, its manifest and the Job.
    kubectl("delete", "backup", "via-job", "-n", namespace, "--timeout=60s")
    assert s3.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0
    wait_for(
        lambda: not get_json("jobs", "-n", namespace)["items"],
        what="the Job to be garbage-collected with its Backup",
    )


def test_a_job_that_succeeds_without_an_artifact_fails_the_backup(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    s3_endpoint: str,
    bucket: tuple[Any, str],
):
    # Not cordoned: kwok marks the pod Succeeded although nothing ran.
    _, bucket_name = bucket
    apply(database_secret(app_database.url), namespace)
    apply(s3_secret(), namespace)
    apply(s3_backup("hollow", bucket_name, s3_endpoint), namespace)
    obj = finished("hollow", namespace, timeout=120)
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj)["reason"] == "ArtifactMissing"
    assert "succeeded but no manifest of this run" in obj["status"]["message"]
    assert "sha256" not in obj["status"]


def test_a_job_backup_to_a_volume_needs_a_claim(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    apply(database_secret(app_database.url), namespace)
    apply(
        backup("no-claim", executor="job", storage={"volume": {"path": str(tmp_path)}}), namespace
    )
    obj = finished("no-claim", namespace)
    assert obj["status"]["phase"] == "Failed"
    assert "spec.storage.volume.claimName" in obj["status"]["message"]
    assert get_json("jobs", "-n", namespace)["items"] == []


def test_backup_run_reports_a_failure_in_the_termination_log_without_the_password(
    app_database: AppDatabase, tmp_path: Path
):
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    wrong = app_database.url.replace(app_database.password, "hunter2-wrong")
    ran = subprocess.run(
        [
            *(ORION_OPERATOR, "backup-run", "--source", "ns/b", "--run-id", "u1"),
            *("--kind", "platform", "--key", "platform/ns-b.dump"),
            *("--volume", str(tmp_path / "out"), "--min-free-percent", "0"),
            *("--termination-log", str(termination_log)),
        ],
        env={**os.environ, "DATABASE_URL": wrong},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    message = termination_log.read_text()
    assert message.startswith("DumpFailed: ") and "password authentication failed" in message
    assert "hunter2-wrong" not in message + ran.stdout + ran.stderr
    assert not any((tmp_path / "out").rglob("*.dump"))


def test_deletion_policy_decides_whether_the_artifact_outlives_the_backup(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase, tmp_path: Path
):
    apply(database_secret(app_database.url), namespace)
    volume = {"volume": {"path": str(tmp_path), "minFreePercent": 1}}
    apply(backup("kept", storage=volume), namespace)
    apply(backup("dropped", storage=volume, deletionPolicy="Delete"), namespace)
    kept = Path(finished("kept", namespace)["status"]["location"].removeprefix("file://"))
    dropped = Path(finished("dropped", namespace)["status"]["location"].removeprefix("file://"))
    assert kept.exists() and dropped.exists()

    kubectl("delete", "backup", "kept", "dropped", "-n", namespace, "--timeout=60s")
    assert kept.exists() and Path(f"{kept}.manifest.json").exists()
    assert not dropped.exists() and not Path(f"{dropped}.manifest.json").exists()

    # Switching a kept Backup to Delete later is allowed, and then deletion removes it.
    apply(backup("later", storage=volume), namespace)
    later = Path(finished("later", namespace)["status"]["location"].removeprefix("file://"))
    patched = kubectl(
        "patch",
        "backup",
        "later",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"deletionPolicy":"Delete"}}',
    )
    assert patched.returncode == 0
    wait_for(
        lambda: get_json("backup", "later", "-n", namespace)["metadata"].get("finalizers"),
        what="the finalizer on a Backup switched to Delete",
    )
    kubectl("delete", "backup", "later", "-n", namespace, "--timeout=60s")
    assert not later.exists()
