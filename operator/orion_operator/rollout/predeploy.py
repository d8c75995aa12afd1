"""The pre-deploy gates' objects: finding a recent Backup, and the Backup and migration Job.

Pure functions from spec to dicts; the handler creates them. Names are deterministic (the
ApiDeployment's name and the generation the rollout started at), so a restarted operator finds
the object it made instead of making a second one.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orion_operator import API_GROUP, API_VERSION
from orion_operator.api.apideployment import ApiDeploymentSpec
from orion_operator.api.backup import BackupDeletionPolicy, BackupPhase, BackupSpec, BackupType
from orion_operator.api.common import SecretKeyRef
from orion_operator.rollout.render import CONTAINER_NAME, MANAGED_BY_LABEL, MANAGER, Manifest, Owner

# On the Backups and Jobs a rollout makes: which ApiDeployment (and which one of that name).
APIDEPLOYMENT_LABEL = "orion.io/apideployment"
APIDEPLOYMENT_UID_LABEL = "orion.io/apideployment-uid"
REVISION_LABEL = "orion.io/revision"
MIGRATIONS_COMPONENT = "orion-migrations"
MIGRATION_JOB_TTL_SECONDS = 7 * 24 * 3600  # logs stay a week; the outcome is in status
_MAX_NAME = 63  # Job names end up in the pods' job-name label


def _name(owner: str, suffix: str) -> str:
    name = f"{owner}-{suffix}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(owner.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(suffix) - 10
    return f"{owner[:keep].rstrip('-.')}-{digest}-{suffix}"


def backup_name(owner: str, generation: int) -> str:
    """`<name>-predeploy-g<generation>`: the Backup taken before that generation's rollout."""
    return _name(owner, f"predeploy-g{generation}")


def migration_job_name(owner: str, generation: int) -> str:
    return _name(owner, f"migrate-g{generation}")


def _time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _same_ref(a: SecretKeyRef, b: SecretKeyRef) -> bool:
    return (a.name, a.key) == (b.name, b.key)


def recent_backup(
    backups: Iterable[Mapping[str, Any]],
    database: SecretKeyRef,
    within: datetime.timedelta,
    now: datetime.datetime,
) -> str | None:
    """The newest Completed platform Backup of `database` finished within `within` of `now`."""
    best: tuple[datetime.datetime, str] | None = None
    for backup in backups:
        status = backup.get("status") or {}
        if status.get("phase") != BackupPhase.COMPLETED.value:
            continue
        finished = _time(status.get("completedAt"))
        if finished is None or now - finished > within:
            continue
        try:
            spec = BackupSpec.model_validate(backup.get("spec") or {})
        except ValueError:
            continue
        if spec.type is not BackupType.PLATFORM or not _same_ref(
            spec.database.secret_ref, database
        ):
            continue
        name = str((backup.get("metadata") or {}).get("name"))
        if best is None or finished > best[0]:
            best = (finished, name)
    return None if best is None else best[1]


def _labels(owner: Owner, revision: int, component: str | None = None) -> dict[str, str]:
    labels = {
        APIDEPLOYMENT_LABEL: owner.name,
        APIDEPLOYMENT_UID_LABEL: owner.uid,
        REVISION_LABEL: str(revision),
        MANAGED_BY_LABEL: MANAGER,
    }
    if component:
        labels["app.kubernetes.io/name"] = component
    return labels


def render_predeploy_backup(
    name: str, namespace: str, spec: ApiDeploymentSpec, *, owner: Owner, revision: int
) -> Manifest:
    """A platform Backup of the API's database, kept when the ApiDeployment is deleted.

    No ownerReference and deletionPolicy Retain: it is the way back from this release's
    migrations, so it must outlive the ApiDeployment (and a `kubectl delete` of it).
    """
    backup = spec.pre_deploy.backup
    backup_spec: dict[str, Any] = {
        "type": BackupType.PLATFORM.value,
        "format": backup.format.value,
        "database": {"secretRef": spec.dependencies.database.secret_ref.model_dump()},
        "storage": backup.storage.model_dump(mode="json", exclude_none=True),
        "deletionPolicy": BackupDeletionPolicy.RETAIN.value,
    }
    if backup.executor is not None:
        backup_spec["executor"] = backup.executor.value
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Backup",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(owner, revision),
            "annotations": {
                "orion.io/reason": f"taken before revision {revision} of ApiDeployment {owner.name}"
            },
        },
        "spec": backup_spec,
    }


@dataclass(frozen=True)
class BackupView:
    """The pre-rollout Backup as the gate sees it; `phase` None when it does not exist."""

    phase: str | None
    message: str = ""
    owner_uid: str | None = None


def backup_view(backup: Mapping[str, Any] | None) -> BackupView:
    if backup is None:
        return BackupView(None)
    status = backup.get("status") or {}
    labels = (backup.get("metadata") or {}).get("labels") or {}
    return BackupView(
        phase=str(status.get("phase") or BackupPhase.PENDING.value),
        message=str(status.get("message") or ""),
        owner_uid=labels.get(APIDEPLOYMENT_UID_LABEL),
    )


def render_migration_job(
    name: str,
    namespace: str,
    spec: ApiDeploymentSpec,
    *,
    owner: Owner,
    revision: int,
    template: Manifest,
) -> Manifest:
    """The migration command in the new pod template's image, with its env and envFrom.

    Owned by the ApiDeployment (deleted with it); no ports, no readiness probe, and labels that
    the Deployment's selector does not match.
    """
    migrations = spec.pre_deploy.migrations
    if migrations is None:
        raise ValueError("spec.preDeploy.migrations is not set")
    api = next(c for c in template["spec"]["containers"] if c["name"] == CONTAINER_NAME)
    container: dict[str, Any] = {
        "name": "migrate",
        "image": api["image"],
        "command": list(migrations.command),
        # The migration tool's last words are the failure reason the gate reports.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    for field in ("env", "envFrom", "resources"):
        if field in api:
            container[field] = api[field]
    labels = _labels(owner, revision, MIGRATIONS_COMPONENT)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": migrations.backoff_limit,
            "activeDeadlineSeconds": migrations.active_deadline_seconds,
            "ttlSecondsAfterFinished": MIGRATION_JOB_TTL_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }
