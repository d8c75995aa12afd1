"""Deleting a Tenant object: its deletionPolicy, applied behind the operator's finalizer.

Retain has no handler of its own: the object goes at once. Suspend marks the tenant row
suspended. Delete creates a final tenant Backup (not owned by the Tenant, so it outlives it),
waits for it to be Completed, then deletes the tenant's rows in one transaction
(`tenancy.deletion`). A Failed final Backup blocks the deletion until someone deletes that
Backup (a new one is then taken) or sets Retain.

Whatever the policy, a Tenant with a `backup` block deletes its BackupSchedule first, orphaning
the Backups already taken, so garbage collection does not take their artifacts with it.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import kopf

from orion_operator import API_GROUP, API_VERSION
from orion_operator.alerts.model import Alert, ObjectRef, firing_alert
from orion_operator.api.backup import BackupDeletionPolicy, BackupPhase, BackupType
from orion_operator.api.tenant import (
    ProvisioningMode,
    TenantDeletionPolicy,
    TenantPhase,
    TenantSpec,
)
from orion_operator.backup.job import label_value
from orion_operator.handlers.tenant import (
    TENANT_LABEL,
    TENANTS,
    delete_schedule_keeping_its_backups,
    effective_provisioning,
    tenant_table,
)
from orion_operator.kube.owned import get_or_none
from orion_operator.kube.resources import BackupResource
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.tenancy.deletion import delete_tenant_data
from orion_operator.tenancy.errors import TenancyError
from orion_operator.tenancy.sync import suspend_tenant_row

# On the final Backup: which Tenant it was taken for, since it is not owned by it.
FINAL_BACKUP_LABEL = f"{API_GROUP}/final-backup-of"


def final_backup_name(tenant_name: str, uid: str) -> str:
    """Deterministic, so a restarted operator finds the Backup it already created."""
    return f"{tenant_name[:230]}-final-{uid.replace('-', '')[:8]}"


def needs_finalizer(spec: kopf.Spec, **_: Any) -> bool:
    """Retain leaves everything as it is: nothing to do before the object goes."""
    policy = spec.get("deletionPolicy") or TenantDeletionPolicy.RETAIN.value
    return bool(policy != TenantDeletionPolicy.RETAIN.value)


def keeps_a_backup_schedule(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return spec.get("backup") is not None or status.get("backupSchedule") is not None


def final_backup_manifest(body: kopf.Body, spec: TenantSpec) -> dict[str, Any]:
    """A tenant Backup of this Tenant; storage: finalBackup, else spec.backup, else the default."""
    storage = spec.final_backup.storage if spec.final_backup else None
    if storage is None and spec.backup is not None:
        storage = spec.backup.storage
    backup_spec: dict[str, Any] = {
        "type": BackupType.TENANT.value,
        "tenantRef": {"name": body.metadata.name},
        "database": spec.database.model_dump(by_alias=True, mode="json"),
        # The last copy of the tenant's data: deleting the Backup object must not delete it.
        "deletionPolicy": BackupDeletionPolicy.RETAIN.value,
    }
    if storage is not None:
        backup_spec["storage"] = storage.model_dump(by_alias=True, exclude_none=True, mode="json")
    if spec.backup is not None and spec.backup.executor is not None:
        backup_spec["executor"] = spec.backup.executor.value
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Backup",
        "metadata": {
            "name": final_backup_name(body.metadata.name, body.metadata.uid or ""),
            "namespace": body.metadata.namespace or "default",
            "labels": {
                TENANT_LABEL: label_value(body.metadata.name),
                FINAL_BACKUP_LABEL: label_value(body.metadata.name),
            },
        },
        "spec": backup_spec,
    }


def _blocked_alert(namespace: str, name: str, message: str, uid: str) -> Alert:
    now = datetime.datetime.now(datetime.UTC)
    return firing_alert(
        ObjectRef("Tenant", namespace, name),
        check="tenant-deletion",
        reason="FinalBackupFailed",
        title=f"FinalBackupFailed: Tenant {namespace}/{name} is not deleted",
        message=message,
        alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{uid}/tenant-deletion/{now.isoformat()}")),
    )


def _progress(
    patch: kopf.Patch, policy: TenantDeletionPolicy, reason: str, message: str, backup: str | None
) -> None:
    patch.status["phase"] = TenantPhase.DELETING.value
    patch.status["deletion"] = {
        "policy": policy.value,
        "backup": backup,
        "reason": reason,
        "message": message,
    }


@kopf.on.delete(*TENANTS, when=keeps_a_backup_schedule)
async def tenant_schedule_deleted(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await delete_schedule_keeping_its_backups(body, memo)


@kopf.on.delete(*TENANTS, when=needs_finalizer)
async def tenant_deleted(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: Any,
    **_: Any,
) -> None:
    namespace = namespace or "default"
    settings = memo.settings
    spec = TenantSpec.model_validate(body.spec)
    policy = spec.deletion_policy
    tenant_id = spec.tenant_id or name
    if effective_provisioning(spec, settings) is ProvisioningMode.OBSERVE:
        # The operator's default mode is observe: it never writes, whatever the policy says.
        kopf.warn(
            body,
            reason="DataRetained",
            message=f"deletionPolicy {policy.value} ignored: provisioning is observe, "
            f'the operator never writes; tenant "{tenant_id}" is left as it is',
        )
        return
    table = tenant_table(spec, settings)
    try:
        url = await read_secret_key(
            memo.kube,
            namespace,
            spec.database.secret_ref,
            referrer=f"Tenant {name}",
            field="spec.database.secretRef",
        )
        if policy is TenantDeletionPolicy.SUSPEND:
            await suspend_tenant_row(
                url,
                tenant_id,
                table=table,
                connect_timeout_seconds=settings.database_connect_timeout_seconds,
            )
            kopf.event(
                body,
                type="Normal",
                reason="TenantSuspended",
                message=f'tenant "{tenant_id}" marked suspended (deletionPolicy Suspend)',
            )
            return
        await _delete_after_final_backup(body, name, namespace, spec, url, patch, memo, logger)
    except (SecretUnavailable, TenancyError) as error:
        _progress(
            patch,
            policy,
            error.reason,
            error.message,
            body.status.get("deletion", {}).get("backup"),
        )
        kopf.warn(body, reason=error.reason, message=error.message)
        raise kopf.TemporaryError(error.message, delay=settings.retry_delay(retry)) from None


async def _delete_after_final_backup(
    body: kopf.Body,
    name: str,
    namespace: str,
    spec: TenantSpec,
    url: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: Any,
) -> None:
    settings = memo.settings
    policy = TenantDeletionPolicy.DELETE
    tenant_id = spec.tenant_id or name
    manifest = final_backup_manifest(body, spec)
    backup_name = manifest["metadata"]["name"]
    found = await get_or_none(memo.kube, BackupResource, backup_name, namespace)
    if found is None:
        await memo.kube.create(BackupResource.from_dict(manifest))
        message = f"final Backup {backup_name} created; the tenant's rows go once it completes"
        _progress(patch, policy, "FinalBackupRunning", message, backup_name)
        kopf.event(body, type="Normal", reason="FinalBackupStarted", message=message)
        raise kopf.TemporaryError(message, delay=settings.final_backup_poll_seconds)

    backup_status = found.to_dict().get("status") or {}
    phase = backup_status.get("phase")
    if phase == BackupPhase.FAILED.value:
        message = (
            f"final Backup {backup_name} failed ({backup_status.get('message') or 'no message'}); "
            f'nothing of tenant "{tenant_id}" was deleted. Fix the cause and delete that Backup '
            "to take a new one, or set deletionPolicy: Retain to keep the data"
        )
        previous = body.status.get("deletion") or {}
        if previous.get("reason") != "FinalBackupFailed" or previous.get("backup") != backup_name:
            kopf.warn(body, reason="FinalBackupFailed", message=message)
            memo.alert_sender.submit(
                _blocked_alert(namespace, name, message, body.metadata.uid or "")
            )
        _progress(patch, policy, "FinalBackupFailed", message, backup_name)
        raise kopf.TemporaryError(message, delay=settings.final_backup_poll_seconds)
    if phase != BackupPhase.COMPLETED.value:
        message = f"waiting for the final Backup {backup_name} ({phase or 'Pending'})"
        _progress(patch, policy, "FinalBackupRunning", message, backup_name)
        raise kopf.TemporaryError(message, delay=settings.final_backup_poll_seconds)

    deletion = await delete_tenant_data(
        url,
        tenant_id,
        table=tenant_table(spec, settings),
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
    )
    counts = ", ".join(f"{t}={n}" for t, n in deletion.deleted_rows.items())
    message = (
        f'tenant "{tenant_id}" deleted from the database after the final Backup {backup_name} '
        f"({backup_status.get('location')}): {counts}"
    )
    kopf.event(body, type="Normal", reason="TenantDataDeleted", message=message)
    logger.info(message)
