"""The job executor's pure parts: the Job manifest, the command line, and reading a Job's fate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from orion_operator.backup.job import (
    BackupRunArgs,
    JobTemplate,
    add_backup_run_arguments,
    job_name,
    job_outcome,
    label_value,
    parse_backup_run_args,
    render_backup_job,
)
from orion_operator.backup.storage import S3Location, VolumeLocation

TEMPLATE = JobTemplate(
    image="registry.example/orion-operator:0.1.0",
    database_secret=("orion-database", "DATABASE_URL"),
    s3_credentials_secret="s3-creds",
    volume_claim="backups",
    backoff_limit=2,
    active_deadline_seconds=3600,
    resources={"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
)


def run_args(location: VolumeLocation | S3Location, tenant_id: str | None = None) -> BackupRunArgs:
    return BackupRunArgs(
        source="shop/nightly",
        run_id="0b4c-uid",
        kind="tenant" if tenant_id else "platform",
        format="custom",
        key="platform/shop-nightly.dump",
        tenant_id=tenant_id,
        min_free_percent=15,
        location=location,
    )


def parsed(argv: list[str]) -> BackupRunArgs:
    parser = argparse.ArgumentParser()
    add_backup_run_arguments(parser)
    return parse_backup_run_args(parser.parse_args(argv))


@pytest.mark.parametrize(
    "location",
    [
        VolumeLocation(Path("/var/backups/orion")),
        S3Location(bucket="b", prefix="p/q", endpoint_url="http://s3:9000", region="eu-west-1"),
        S3Location(bucket="only-bucket"),
    ],
)
def test_the_command_line_carries_the_whole_run_and_parses_back(location):
    run = run_args(location, tenant_id="acme")
    assert parsed(run.to_argv()) == run


def test_s3_keys_never_reach_the_command_line():
    location = S3Location(bucket="b", access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t")
    argv = run_args(location).to_argv()
    assert "s3cr3t" not in argv and "AKIAEXAMPLE" not in argv
    back = parsed(argv).location
    assert isinstance(back, S3Location) and back.secret_access_key is None


def test_the_job_is_owned_by_the_backup_and_takes_secrets_from_secret_refs():
    job = render_backup_job(
        backup_name="nightly",
        backup_uid="uid-1",
        namespace="shop",
        run=run_args(VolumeLocation(Path("/var/backups/orion"))),
        template=TEMPLATE,
    )
    assert job["metadata"]["name"] == "nightly-run"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "orion.io/v1alpha1",
            "kind": "Backup",
            "name": "nightly",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 3600)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == TEMPLATE.image
    assert container["resources"] == TEMPLATE.resources
    env = {each["name"]: each["valueFrom"]["secretKeyRef"] for each in container["env"]}
    assert env == {
        "DATABASE_URL": {"name": "orion-database", "key": "DATABASE_URL"},
        "AWS_ACCESS_KEY_ID": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"},
        "AWS_SECRET_ACCESS_KEY": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"},
    }
    # The claim is mounted where the command line writes.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "backups")
    assert mount["mountPath"] == "/var/backups/orion"
    assert container["args"][container["args"].index("--volume") + 1] == "/var/backups/orion"
    claim = next(v for v in pod["volumes"] if v["name"] == "backups")
    assert claim["persistentVolumeClaim"] == {"claimName": "backups"}
    assert "DATABASE_URL" not in json.dumps(container["args"])


def test_job_names_fit_the_label_limit_and_stay_distinct():
    assert job_name("nightly") == "nightly-run"
    long_a, long_b = "a" * 70, "a" * 69 + "b"
    assert len(job_name(long_a)) <= 63 and len(job_name(long_b)) <= 63
    assert job_name(long_a) != job_name(long_b)
    assert job_name(long_a) == job_name(long_a)


def failed_pod(message: str, created: str) -> dict:
    return {
        "metadata": {"creationTimestamp": created},
        "status": {
            "containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": message}}}]
        },
    }


def job_with(condition: str, reason: str = "", message: str = "") -> dict:
    return {
        "status": {
            "conditions": [
                {"type": condition, "status": "True", "reason": reason, "message": message}
            ]
        }
    }


def test_a_job_without_a_final_condition_is_running():
    assert job_outcome({"status": {"active": 1}}, []).state == "running"
    assert job_outcome({}, []).state == "running"


def test_a_complete_job_succeeded():
    assert job_outcome(job_with("Complete"), []).state == "succeeded"


def test_a_failed_job_reports_the_newest_pods_reason():
    pods = [
        failed_pod("StorageFailed: S3 at http://s3:9000 unreachable", "2026-11-28T01:00:00Z"),
        failed_pod("DumpFailed: pg_dump: connection refused", "2026-11-28T02:00:00Z"),
    ]
    outcome = job_outcome(job_with("Failed", "BackoffLimitExceeded"), pods)
    assert (outcome.state, outcome.reason, outcome.message) == (
        "failed",
        "DumpFailed",
        "pg_dump: connection refused",
    )


def test_a_failed_job_without_a_pod_message_says_so():
    outcome = job_outcome(
        job_with("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
        [],
    )
    assert (outcome.state, outcome.reason) == ("failed", "DeadlineExceeded")
    assert "longer than specified deadline" in outcome.message
    assert "no message from the backup pod" in outcome.message


def test_long_backup_names_still_make_valid_job_labels():
    name = "tenant-with-a-very-long-name-" + "x" * 200 + "-final-0a1b2c3d"
    job = render_backup_job(
        backup_name=name,
        backup_uid="uid-2",
        namespace="shop",
        run=run_args(VolumeLocation(Path("/var/backups/orion"))),
        template=TEMPLATE,
    )
    value = job["metadata"]["labels"]["orion.io/backup"]
    assert len(value) <= 63 and value == label_value(name) != label_value(name + "y")
    assert len(job["metadata"]["name"]) <= 63
