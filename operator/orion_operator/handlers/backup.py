"""Backup handlers: resolve credentials and destination, run the backup, record the outcome.

The run itself is `backup.run.run_backup`, executed inline in the operator.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.api.backup import DEFAULT_BACKUP_DIR, BackupPhase, BackupSpec, BackupType
from orion_operator.api.common import ConditionStatus, SecretKeyRef
from orion_operator.backup.dump import DumpError
from orion_operator.backup.run import BackupError, BackupRequest, artifact_key, run_backup
from orion_operator.backup.storage import (
    Location,
    S3Location,
    StorageError,
    VolumeLocation,
    discard_incomplete,
)
from orion_operator.conditions import READY, format_time, set_condition, utc_now
from orion_operator.kube.resources import BackupResource, TenantResource, merge_patch_status
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key

BACKUPS = (API_GROUP, API_VERSION, "backups")
FINISHED = (BackupPhase.COMPLETED.value, BackupPhase.FAILED.value)


async def _location(memo: kopf.Memo, namespace: str, name: str, spec: BackupSpec) -> Location:
    s3 = spec.storage.s3
    if s3 is None:
        volume = spec.storage.volume
        return VolumeLocation(Path(volume.path if volume else DEFAULT_BACKUP_DIR))
    key_id = secret_key = None
    if s3.credentials_secret:
        key_id, secret_key = [
            await read_secret_key(
                memo.kube,
                namespace,
                SecretKeyRef(name=s3.credentials_secret, key=key),
                referrer=f"Backup {name}",
                field="spec.storage.s3.credentialsSecret",
            )
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return S3Location(
        bucket=s3.bucket,
        prefix=s3.prefix,
        endpoint_url=s3.endpoint,
        region=s3.region,
        access_key_id=key_id,
        secret_access_key=secret_key,
    )


async def _tenant_id(memo: kopf.Memo, namespace: str, spec: BackupSpec) -> str | None:
    if spec.type is not BackupType.TENANT or spec.tenant_ref is None:
        return None
    try:
        tenant = await memo.kube.get(TenantResource, spec.tenant_ref.name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            raise BackupError(
                "TenantNotFound",
                f'Tenant "{spec.tenant_ref.name}" not found in namespace "{namespace}" '
                "(spec.tenantRef)",
            ) from None
        raise
    return str((tenant.get("spec") or {}).get("tenantId") or spec.tenant_ref.name)


def _failed_alert(namespace: str, name: str, reason: str, message: str) -> Alert:
    now = datetime.datetime.now(datetime.UTC)
    return Alert(
        id=str(uuid.uuid4()),
        check="backup",
        reason="BackupFailed",
        severity=Severity.CRITICAL,
        transition=Transition.FIRING,
        title=f"BackupFailed: Backup {namespace}/{name}",
        message=f"{reason}: {message}",
        subject=ObjectRef("Backup", namespace, name),
        occurred_at=now,
    )


@kopf.on.resume(*BACKUPS)
@kopf.on.create(*BACKUPS)
async def backup_requested(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    """Run once: a finished Backup is never run again; an interrupted one starts over."""
    namespace = namespace or "default"
    if body.status.get("phase") in FINISHED:
        return
    spec = BackupSpec.model_validate(body.spec)
    generation = body.metadata.get("generation")
    attempts = int(body.status.get("attempts") or 0) + 1
    started = utc_now()
    conditions = set_condition(
        body.status.get("conditions"),
        type=READY,
        status=ConditionStatus.FALSE,
        reason="Running",
        message="the backup is running",
        generation=generation,
    )
    # Recorded before the dump starts, so a restart knows a run was under way.
    await merge_patch_status(
        memo.kube,
        BackupResource,
        name,
        namespace,
        {
            "phase": BackupPhase.RUNNING.value,
            "attempts": attempts,
            "startedAt": format_time(started),
            "observedGeneration": generation,
            "conditions": conditions,
        },
    )
    try:
        location = await _location(memo, namespace, name, spec)
        tenant_id = await _tenant_id(memo, namespace, spec)
        key = artifact_key(spec.type.value, namespace, name, spec.format.value, tenant_id)
        if attempts > 1:
            logger.info("an earlier attempt was interrupted; discarding its partial artifact")
            await discard_incomplete(location, key)
        database_url = await read_secret_key(
            memo.kube,
            namespace,
            spec.database.secret_ref,
            referrer=f"Backup {name}",
            field="spec.database.secretRef",
        )
        volume = spec.storage.volume
        result = await run_backup(
            BackupRequest(
                source=f"{namespace}/{name}",
                database_url=database_url,
                location=location,
                key=key,
                kind=spec.type.value,
                format=spec.format.value,
                tenant_id=tenant_id,
                min_free_percent=volume.min_free_percent if volume else 20,
            )
        )
    except (BackupError, DumpError, StorageError, SecretUnavailable) as error:
        reason = getattr(error, "reason", type(error).__name__.removesuffix("Error") + "Failed")
        message = getattr(error, "message", str(error))
        patch.status.update(
            {
                "phase": BackupPhase.FAILED.value,
                "message": message,
                "completedAt": format_time(utc_now()),
                "durationSeconds": round((utc_now() - started).total_seconds(), 3),
                "conditions": set_condition(
                    conditions,
                    type=READY,
                    status=ConditionStatus.FALSE,
                    reason=reason,
                    message=message,
                    generation=generation,
                ),
            }
        )
        metrics.backups_failed_total.labels(namespace, spec.type.value).inc()
        kopf.warn(body, reason="BackupFailed", message=f"{reason}: {message}")
        memo.alert_sender.submit(_failed_alert(namespace, name, reason, message))
        return

    artifact = result.artifact
    message = f"{artifact.size_bytes} bytes, sha256 {artifact.sha256[:12]}…, at {artifact.uri}"
    patch.status.update(
        {
            "phase": BackupPhase.COMPLETED.value,
            "completedAt": format_time(result.finished_at),
            "durationSeconds": round((result.finished_at - result.started_at).total_seconds(), 3),
            "sizeBytes": artifact.size_bytes,
            "sha256": artifact.sha256,
            "location": artifact.uri,
            "manifest": artifact.manifest_uri,
            "pgDumpVersion": result.pg_dump_version,
            "serverVersion": result.server_version,
            "rowCounts": result.row_counts,
            "message": message,
            "conditions": set_condition(
                conditions,
                type=READY,
                status=ConditionStatus.TRUE,
                reason="Completed",
                message=message,
                generation=generation,
            ),
        }
    )
    labels = (namespace, spec.type.value)
    metrics.backup_last_success_timestamp_seconds.labels(*labels).set(
        result.finished_at.timestamp()
    )
    metrics.backup_duration_seconds.labels(*labels).observe(
        (result.finished_at - result.started_at).total_seconds()
    )
    metrics.backup_size_bytes.labels(*labels).set(artifact.size_bytes)
    kopf.info(body, reason="BackupCompleted", message=message)
