"""The job executor: a run as a `batch/v1` Job in the operator's image.

Backups run `orion-operator backup-run`, restores `orion-operator restore-run`; both Jobs come
from one renderer (`render_run_job`). The Job's command line carries everything but secrets; the
database URL and the S3 keys reach the pod as env `secretKeyRef`s, so they never appear in the
Job object, `ps` or logs. The pod needs no Kubernetes API access: a backup writes the artifact and
its manifest, and the operator reads the manifest once the Job has succeeded (or the pod's
termination message when it failed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orion_operator import API_GROUP, API_VERSION
from orion_operator.backup.storage import Location, S3Location, VolumeLocation

BACKUP_LABEL = "orion.io/backup"
DATABASE_URL_ENV = "DATABASE_URL"
S3_KEY_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
TERMINATION_LOG = "/dev/termination-log"
_MAX_NAME = 63  # Job names end up in the pods' `job-name` label


@dataclass(frozen=True)
class BackupRunArgs:
    """What `backup-run` needs besides secrets: the non-secret half of a BackupRequest."""

    source: str
    run_id: str
    kind: str
    format: str
    key: str
    tenant_id: str | None
    min_free_percent: int
    location: Location  # its S3 keys, if any, are not rendered: they come from the env

    def to_argv(self) -> list[str]:
        argv = ["--source", self.source, "--run-id", self.run_id, "--kind", self.kind]
        argv += ["--format", self.format, "--key", self.key]
        argv += ["--min-free-percent", str(self.min_free_percent)]
        if self.tenant_id:
            argv += ["--tenant-id", self.tenant_id]
        return [*argv, *location_argv(self.location)]


def location_argv(location: Location) -> list[str]:
    """Where the artifacts are, as `add_location_arguments` reads it back; never the S3 keys."""
    if isinstance(location, VolumeLocation):
        return ["--volume", str(location.directory)]
    argv = ["--s3-bucket", location.bucket]
    if location.prefix:
        argv += ["--s3-prefix", location.prefix]
    if location.endpoint_url:
        argv += ["--s3-endpoint", location.endpoint_url]
    if location.region:
        argv += ["--s3-region", location.region]
    return argv


def add_location_arguments(parser: argparse.ArgumentParser, volume_help: str) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--volume", type=Path, help=volume_help)
    where.add_argument("--s3-bucket")
    parser.add_argument("--s3-prefix", default="")
    parser.add_argument("--s3-endpoint", default=None)
    parser.add_argument("--s3-region", default=None)


def parse_location(options: argparse.Namespace) -> Location:
    if options.volume is not None:
        return VolumeLocation(options.volume)
    # No keys here: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the env.
    return S3Location(
        bucket=options.s3_bucket,
        prefix=options.s3_prefix,
        endpoint_url=options.s3_endpoint,
        region=options.s3_region,
    )


def add_termination_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=Path(TERMINATION_LOG),
        help="where the failure reason goes for the operator to read (when writable)",
    )


def add_backup_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `backup-run` options; `BackupRunArgs.to_argv` renders exactly these."""
    parser.add_argument("--source", required=True, help="<namespace>/<name> of the Backup")
    parser.add_argument("--run-id", required=True, help="the Backup's uid, kept in the manifest")
    parser.add_argument("--kind", choices=["platform", "tenant"], required=True)
    parser.add_argument("--format", choices=["custom", "plain"], default="custom")
    parser.add_argument("--key", required=True, help="artifact key inside the storage")
    parser.add_argument("--tenant-id", default=None)
    parser.add_argument("--min-free-percent", type=int, default=20)
    add_location_arguments(parser, "directory for artifacts")
    add_termination_log_argument(parser)


def parse_backup_run_args(options: argparse.Namespace) -> BackupRunArgs:
    return BackupRunArgs(
        source=options.source,
        run_id=options.run_id,
        kind=options.kind,
        format=options.format,
        key=options.key,
        tenant_id=options.tenant_id,
        min_free_percent=options.min_free_percent,
        location=parse_location(options),
    )


def label_value(name: str) -> str:
    """`name` as a label value: as it is up to 63 characters, else shortened with a hash."""
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9].rstrip('-.')}-{digest}"


def job_name(owner_name: str, suffix: str = "run") -> str:
    """`<owner>-<suffix>` (`nightly-run`), shortened with a hash when the owner's name is long.

    Backups and Restores use different suffixes, so a Backup and a Restore of the same name never
    claim the same Job.
    """
    name = f"{owner_name}-{suffix}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(owner_name.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(suffix) - 10  # room for "-<digest>-<suffix>"
    return f"{owner_name[:keep].rstrip('-.')}-{digest}-{suffix}"


@dataclass(frozen=True)
class JobTemplate:
    """Everything about a run's Job that does not come from the run itself."""

    image: str
    database_secret: tuple[str, str]  # (Secret name, key)
    s3_credentials_secret: str | None
    volume_claim: str | None
    backoff_limit: int
    active_deadline_seconds: int
    resources: dict[str, dict[str, str]]
    service_account: str | None = None
    volume_read_only: bool = False  # restores only read the artifacts


@dataclass(frozen=True)
class RunJob:
    """What differs between the kinds that run as a Job: the owner and the command."""

    owner_kind: str  # "Backup" | "Restore": owns the Job, so deleting it deletes the Job
    owner_name: str
    owner_uid: str
    namespace: str
    subcommand: str  # "backup-run" | "restore-run"
    args: list[str]
    location: Location  # where the artifacts are; a volume is mounted at its directory
    label: str  # e.g. orion.io/backup=<owner name>, on the Job and its pods
    component: str  # app.kubernetes.io/name
    container: str
    name_suffix: str = "run"


def render_run_job(run: RunJob, template: JobTemplate) -> dict[str, Any]:
    """The Job manifest for one run, owned by the object that asked for it."""
    labels = {
        run.label: label_value(run.owner_name),
        "app.kubernetes.io/name": run.component,
        "app.kubernetes.io/managed-by": "orion-operator",
    }
    secret_name, secret_key = template.database_secret
    env: list[dict[str, Any]] = [
        {
            "name": DATABASE_URL_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}},
        }
    ]
    if template.s3_credentials_secret:
        env += [
            {
                "name": each,
                "valueFrom": {
                    "secretKeyRef": {"name": template.s3_credentials_secret, "key": each}
                },
            }
            for each in S3_KEY_ENVS
        ]
    # pg_dump, pg_restore and Python want a writable /tmp; the root filesystem stays read-only.
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if isinstance(run.location, VolumeLocation) and template.volume_claim:
        claim: dict[str, Any] = {"claimName": template.volume_claim}
        mount: dict[str, Any] = {"name": "backups", "mountPath": str(run.location.directory)}
        if template.volume_read_only:
            claim["readOnly"] = True
            mount["readOnly"] = True
        volumes.append({"name": "backups", "persistentVolumeClaim": claim})
        mounts.append(mount)
    container = {
        "name": run.container,
        "image": template.image,
        "command": ["orion-operator", run.subcommand],
        "args": run.args,
        "env": env,
        "resources": template.resources,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the run needs no Kubernetes API
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if template.service_account:
        pod_spec["serviceAccountName"] = template.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.owner_name, run.name_suffix),
            "namespace": run.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": run.owner_kind,
                    "name": run.owner_name,
                    "uid": run.owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": template.backoff_limit,
            "activeDeadlineSeconds": template.active_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_backup_job(
    *,
    backup_name: str,
    backup_uid: str,
    namespace: str,
    run: BackupRunArgs,
    template: JobTemplate,
) -> dict[str, Any]:
    """The backup Job, owned by the Backup so deleting the Backup deletes the Job."""
    return render_run_job(
        RunJob(
            owner_kind="Backup",
            owner_name=backup_name,
            owner_uid=backup_uid,
            namespace=namespace,
            subcommand="backup-run",
            args=run.to_argv(),
            location=run.location,
            label=BACKUP_LABEL,
            component="orion-backup",
            container="backup",
        ),
        template,
    )


JobState = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobOutcome:
    state: JobState
    reason: str = ""
    message: str = ""


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _termination_message(pods: list[dict[str, Any]]) -> str:
    """The newest failed pod's termination message: `backup-run` and `restore-run` write their
    reason there."""

    def finished_at(pod: dict[str, Any]) -> str:
        return str((pod.get("metadata") or {}).get("creationTimestamp") or "")

    for pod in sorted(pods, key=finished_at, reverse=True):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") not in (None, 0) and terminated.get("message"):
                return str(terminated["message"]).strip()
    return ""


def job_outcome(
    job: dict[str, Any], pods: list[dict[str, Any]], what: str = "backup"
) -> JobOutcome:
    """Where a `what` ("backup", "restore") Job stands, from its conditions and its pods."""
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return JobOutcome("succeeded")
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed is None:
        return JobOutcome("running")
    message = _termination_message(pods)
    job_reason = str(failed.get("reason") or "JobFailed")
    if message:
        reason, _, detail = message.partition(": ")
        if reason.isidentifier() and detail:
            return JobOutcome("failed", reason, detail)
        return JobOutcome("failed", job_reason, message)
    text = str(failed.get("message") or f"the {what} Job failed")
    return JobOutcome("failed", job_reason, f"{text} (no message from the {what} pod)")


def write_termination_message(path: Path, text: str) -> None:
    """Where the operator reads a failed run's `Reason: message` (the pod's termination log)."""
    # The kubelet creates the file in a pod; elsewhere there is none and stderr says the same.
    if path.exists():
        with contextlib.suppress(OSError):
            path.write_text(text[:4000])  # the kubelet keeps at most 4096 bytes
