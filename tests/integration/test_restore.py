"""Restores end to end: kubectl apply a Restore, the operator restores, verifies and reports.

The job executor is checked as the backup Job is (see test_backup_job.py): kwok fakes pods, so
with the nodes cordoned the test checks the Job the operator made, then runs exactly its command
with its env resolved from the Secrets; after uncordoning, the operator verifies the database
itself and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orion_operator.devenv.kubectl import REPO_ROOT, kubectl
from tests.conftest import APP_ROLE, AppDatabase
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
from tests.integration.test_backup import backup, finished
from tests.integration.test_backup_job import (  # noqa: F401  (pytest fixtures)
    ORION_OPERATOR,
    S3_KEYS,
    bucket,
    cordoned,
    resolved_env,
    s3_secret,
)
from tests.restore_support import everyone, plain_dump_of, seed, url_of


def restore(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "Restore",
        "metadata": {"name": name},
        "spec": spec,
    }


def restored(name: str, namespace: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json("restore", name, "-n", namespace)
        return obj if obj.get("status", {}).get("phase") in ("Completed", "Failed") else None

    return wait_for(check, timeout, f"Restore {name} to finish")


@pytest.fixture
def target(app_database: AppDatabase) -> Iterator[str]:
    """An empty database on the same server, owned by the app role: where restores go."""
    name = f"target_{uuid.uuid4().hex[:10]}"
    app_database.server.create_database(name, owner=APP_ROLE)
    yield name
    app_database.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def volume(path: Path) -> dict[str, Any]:
    return {"volume": {"path": str(path), "minFreePercent": 1}}


def completed_backup(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    applied = apply(backup(name, **spec), namespace)
    assert applied.returncode == 0, applied.stderr
    obj = finished(name, namespace)
    assert obj["status"]["phase"] == "Completed", obj["status"].get("message")
    return obj


def events_with(reason: str, namespace: str) -> str:
    """The namespace's Events as JSON, once one with `reason` has been posted."""

    def check() -> str | None:
        text = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        return text if reason in text else None

    return wait_for(check, what=f"a {reason} Event")


def s3(bucket_name: str, endpoint: str) -> dict[str, Any]:
    return {
        "s3": {
            "bucket": bucket_name,
            "prefix": "jobs",
            "endpoint": endpoint,
            "region": "us-east-1",
            "credentialsSecret": "s3-creds",
        }
    }


def no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_a_restore_from_a_backup_ref_restores_verifies_and_reports(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    tmp_path: Path,
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)
    made = completed_backup("nightly", namespace, storage=volume(tmp_path))

    applied = apply(
        restore(
            "into-target",
            backupRef={"name": "nightly"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
            executor="inline",
        ),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr
    obj = restored("into-target", namespace)
    status = obj["status"]

    assert status["phase"] == "Completed", status.get("message")
    assert condition(obj)["status"] == "True" and condition(obj)["reason"] == "Completed"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    source = status["source"]
    assert (source["backup"], source["uri"], source["kind"], source["format"]) == (
        "nightly",
        made["status"]["location"],
        "platform",
        "custom",
    )
    assert source["sha256"] == made["status"]["sha256"] and source["sha256Verified"] is True
    assert source["sizeBytes"] == made["status"]["sizeBytes"]
    assert status["target"] == {"database": target}
    assert [(v["sql"], v["expect"], v["value"], v["passed"]) for v in status["verification"]] == [
        ('SELECT COUNT(*) FROM "Tenant"', ">= 1", 3, True)
    ]
    assert status["attempts"] == 1 and status["executor"] == "inline"
    assert status["startedAt"] and status["completedAt"] and status["durationSeconds"] >= 0
    assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)

    # What kubectl shows, and never the database URL or its password. (RestoreCompleted is a
    # Normal Event: posted only when the operator's posting level is lowered to INFO.)
    listed = kubectl("get", "rst", "-n", namespace).stdout
    assert "into-target" in listed and "nightly" in listed and "Completed" in listed
    assert target in listed and "platform" in listed
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    no_secrets(json.dumps(obj) + events, app_database.password, url_of(app_database, target))

    # The spec is fixed: a second restore is a new Restore.
    changed = kubectl(
        "patch",
        "restore",
        "into-target",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"overwrite":true}}',
        check=False,
    )
    assert changed.returncode != 0 and "cannot change" in changed.stderr
    assert get_json("restore", "into-target", "-n", namespace)["status"]["attempts"] == 1


def test_a_restore_waits_for_its_backup_to_complete(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    tmp_path: Path,
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)
    apply(
        restore(
            "early",
            backupRef={"name": "not-yet"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
        ),
        namespace,
    )
    waiting = wait_for(
        lambda: (
            (obj := get_json("restore", "early", "-n", namespace)).get("status", {}).get("phase")
            == "Pending"
            and obj
        ),
        what="the Restore to wait for its Backup",
    )
    assert condition(waiting)["reason"] == "BackupNotFound"
    assert 'Backup "not-yet" not found' in condition(waiting)["message"]

    completed_backup("not-yet", namespace, storage=volume(tmp_path), format="plain")
    obj = restored("early", namespace)
    assert obj["status"]["phase"] == "Completed", obj["status"].get("message")
    assert obj["status"]["source"]["format"] == "plain"


def test_tenant_restore_replaces_the_tenants_damaged_rows_only_with_overwrite(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
    tmp_path: Path,
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    # observe: the operator reads the tenant's row but never writes it during the test.
    apply(tenant("acme", provisioning="observe"), namespace)
    original = everyone(app_database)
    completed_backup(
        "acme-now", namespace, type="tenant", tenantRef={"name": "acme"}, storage=volume(tmp_path)
    )
    app_database.execute(
        """UPDATE "User" SET name = 'damaged' WHERE id = 'u1';
           DELETE FROM "Sale" WHERE id = 's1';
           INSERT INTO "Product" (id, "tenantId", sku, name) VALUES ('p8', 'acme', 'Z', 'Zap')"""
    )
    damaged = everyone(app_database)

    apply(restore("acme-careful", backupRef={"name": "acme-now"}), namespace)
    refused = restored("acme-careful", namespace)
    assert refused["status"]["phase"] == "Failed"
    assert condition(refused)["reason"] == "TenantNotEmpty"
    assert "overwrite: true" in refused["status"]["message"]
    assert everyone(app_database) == damaged
    wait_for(
        lambda: any(
            json.loads(r.body)["object"]["name"] == "acme-careful"
            and json.loads(r.body)["severity"] == "critical"
            and json.loads(r.body)["reason"] == "RestoreFailed"
            for r in alert_receivers.http.to("/orion-alerts")
        ),
        what="the RestoreFailed alert",
    )

    apply(restore("acme-back", backupRef={"name": "acme-now"}, overwrite=True), namespace)
    obj = restored("acme-back", namespace)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["source"]["kind"] == "tenant" and status["source"]["tenant"] == "acme"
    assert status["rowCounts"] == {"AuditLog": 100, "Product": 2, "Sale": 2, "User": 2}
    assert everyone(app_database) == original
    listed = kubectl("get", "rst", "acme-back", "-n", namespace).stdout
    assert "tenant" in listed and "acme" in listed


def test_a_failed_verification_marks_the_restore_failed_and_raises_a_critical_alert(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    tmp_path: Path,
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)
    completed_backup("nightly", namespace, storage=volume(tmp_path))
    apply(
        restore(
            "too-hopeful",
            backupRef={"name": "nightly"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
            verify=[
                {"sql": 'SELECT COUNT(*) FROM "Tenant"', "expect": {"min": 100}},
                {"sql": 'SELECT COUNT(*) FROM "User"', "expect": {"equals": 5}},
            ],
        ),
        namespace,
    )
    obj = restored("too-hopeful", namespace)
    status = obj["status"]
    assert status["phase"] == "Failed" and condition(obj)["reason"] == "VerificationFailed"
    assert [(v["value"], v["passed"]) for v in status["verification"]] == [(3, False), (5, True)]
    assert "3 is not >= 100" in status["message"]
    wait_for(
        lambda: any(
            json.loads(r.body)["object"]["name"] == "too-hopeful"
            and json.loads(r.body)["severity"] == "critical"
            for r in alert_receivers.http.to("/orion-alerts")
        ),
        what="the critical alert",
    )
    events_with("RestoreFailed", namespace)


def test_bad_restores_are_rejected_at_apply_time_naming_the_field(
    operator: OperatorProcess, namespace: str
):
    both = apply(
        restore("r1", backupRef={"name": "b"}, location={"key": "platform/x.dump"}), namespace
    )
    assert both.returncode != 0 and "exactly one of backupRef or location" in both.stderr
    neither = apply(restore("r2"), namespace)
    assert neither.returncode != 0 and "exactly one of backupRef or location" in neither.stderr
    two_places = apply(
        restore("r3", location={"key": "k", "volume": {}, "s3": {"bucket": "abc"}}), namespace
    )
    assert two_places.returncode != 0 and "one of volume or s3" in two_places.stderr
    no_key = apply(restore("r4", location={"volume": {}}), namespace)
    assert no_key.returncode != 0 and "spec.location.key" in no_key.stderr
    empty_expect = apply(
        restore("r5", backupRef={"name": "b"}, verify=[{"sql": "SELECT 1", "expect": {}}]),
        namespace,
    )
    assert empty_expect.returncode != 0 and "at least one of min, max or equals" in (
        empty_expect.stderr
    )
    upside_down = apply(
        restore(
            "r6",
            backupRef={"name": "b"},
            verify=[{"sql": "SELECT 1", "expect": {"min": 3, "max": 1}}],
        ),
        namespace,
    )
    assert upside_down.returncode != 0 and "expect.min must not be greater" in upside_down.stderr
    executor = apply(restore("r7", backupRef={"name": "b"}, executor="cron"), namespace)
    assert executor.returncode != 0 and "spec.executor" in executor.stderr
    assert get_json("restores", "-n", namespace)["items"] == []


def test_a_job_restore_runs_the_jobs_own_command_and_completes_after_verifying(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    s3_endpoint: str,
    bucket: tuple[Any, str],  # noqa: F811
    cordoned: list[str],  # noqa: F811
    tmp_path: Path,
):
    _, bucket_name = bucket
    seed(app_database)
    target_url = url_of(app_database, target)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(target_url, name="restore-target"), namespace)
    apply(s3_secret(), namespace)
    # The backup runs inline; only the restore goes to a Job.
    completed_backup("to-s3", namespace, executor="inline", storage=s3(bucket_name, s3_endpoint))
    applied = apply(
        restore(
            "via-job",
            backupRef={"name": "to-s3"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
            executor="job",
            job={"activeDeadlineSeconds": 900},
        ),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr
    uid = get_json("restore", "via-job", "-n", namespace)["metadata"]["uid"]

    job = wait_for(lambda: get_json("jobs", "-n", namespace)["items"], what="the restore Job")[0]
    assert job["metadata"]["name"] == "via-job-restore"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Restore", "via-job", uid)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 900
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"] == ["orion-operator", "restore-run"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env_refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"]}
    assert env_refs["DATABASE_URL"] == {"name": "restore-target", "key": "DATABASE_URL"}
    assert env_refs["AWS_SECRET_ACCESS_KEY"]["name"] == "s3-creds"
    no_secrets(json.dumps(job), target_url, app_database.password, S3_KEYS["AWS_SECRET_ACCESS_KEY"])
    running = get_json("restore", "via-job", "-n", namespace)["status"]
    assert (running["phase"], running["job"]) == ("Running", "via-job-restore")
    assert running["source"]["kind"] == "platform" and running["target"]["database"] == target

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
    assert printed["outcome"] == "completed" and printed["database"] == target
    assert termination_log.read_text() == ""
    no_secrets(ran.stdout + ran.stderr, app_database.password)
    assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)

    for node in cordoned:
        kubectl("uncordon", node)
    obj = restored("via-job", namespace, timeout=120)
    status = obj["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert status["verification"][0]["value"] == 3 and status["verification"][0]["passed"]
    assert status["source"]["sha256Verified"] is True

    # Deleting the Restore takes its Job along.
    kubectl("delete", "restore", "via-job", "-n", namespace, "--timeout=60s")
    wait_for(
        lambda: not get_json("jobs", "-n", namespace)["items"],
        what="the Job to be garbage-collected with its Restore",
    )


def test_a_job_that_succeeds_without_restoring_fails_verification(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    s3_endpoint: str,
    bucket: tuple[Any, str],  # noqa: F811
):
    # Not cordoned: kwok marks the pod Succeeded although nothing ran, and the operator's own
    # verification of the (still empty) target catches it.
    _, bucket_name = bucket
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)
    apply(s3_secret(), namespace)
    completed_backup("to-s3", namespace, executor="inline", storage=s3(bucket_name, s3_endpoint))
    apply(
        restore(
            "hollow",
            backupRef={"name": "to-s3"},
            database={"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
            executor="job",
        ),
        namespace,
    )
    obj = restored("hollow", namespace, timeout=120)
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj)["reason"] == "VerificationFailed"
    assert 'relation "Tenant" does not exist' in obj["status"]["message"]


def test_the_restore_command_reads_the_backup_and_secrets_through_the_kubeconfig(
    operator: OperatorProcess,
    cluster: str,
    namespace: str,
    app_database: AppDatabase,
    target: str,
    tmp_path: Path,
):
    seed(app_database)
    apply(database_secret(app_database.url), namespace)
    apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)
    completed_backup("nightly", namespace, storage=volume(tmp_path))
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [ORION_OPERATOR, "restore", "--backup", "nightly", "-n", namespace],
        env={**environment, "KUBECONFIG": cluster},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The default target is the Backup's namespace's orion-database: the source, not empty.
    assert done.returncode == 1 and "TargetNotEmpty" in done.stderr

    done = subprocess.run(
        [
            *(ORION_OPERATOR, "restore", "--backup", "nightly", "-n", namespace),
            *("--database-secret", "restore-target:DATABASE_URL"),
        ],
        env={**environment, "KUBECONFIG": cluster},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f'into database "{target}"' in done.stdout
    assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)
    no_secrets(done.stdout + done.stderr, app_database.password)

    missing = subprocess.run(
        [ORION_OPERATOR, "restore", "--backup", "nope", "-n", namespace],
        env={**environment, "KUBECONFIG": cluster},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and 'Backup "nope" not found' in missing.stderr


def test_the_sample_restore_is_accepted_and_waits_harmlessly(
    operator: OperatorProcess, namespace: str
):
    sample = REPO_ROOT / "manifests" / "samples" / "restore.yaml"
    applied = kubectl("apply", "-n", namespace, "-f", str(sample), check=False)
    assert applied.returncode == 0, applied.stderr
    waiting = wait_for(
        lambda: condition(get_json("restore", "acme-undo-import", "-n", namespace)),
        what="the sample Restore's condition",
    )
    assert waiting["reason"] == "BackupNotFound"
    status = get_json("restore", "acme-undo-import", "-n", namespace)["status"]
    assert status["phase"] == "Pending" and status["attempts"] == 0  # nothing ran
