"""Where a restore's artifact is: a Backup object's result, or a location given by hand.

Shared by the Restore handler and the `restore --backup` command, which reads the same objects
through the kubeconfig. Takes a lightkube client; no kopf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from orion_operator.api.backup import BackupPhase, BackupSpec, StorageSpec
from orion_operator.backup.storage import Location
from orion_operator.kube.resources import BackupResource
from orion_operator.kube.storage import resolve_storage, storage_location
from orion_operator.restore.errors import RestoreError, WaitingForBackup


@dataclass(frozen=True)
class ArtifactSource:
    location: Location
    key: str
    expected_sha256: str | None = None
    backup: str | None = None  # the Backup's name, when the source is a backupRef
    volume_claim: str | None = None  # for a Job: the claim that holds the volume
    credentials_secret: str | None = None  # for a Job: the S3 keys' Secret


async def located_source(
    client: AsyncClient | None,
    namespace: str,
    storage: StorageSpec,
    key: str,
    *,
    referrer: str,
    credentials: bool = True,
) -> ArtifactSource:
    """A Restore's `spec.location`; S3 keys from its credentials Secret when `credentials`."""
    if client is None:
        location = storage_location(storage)
    else:
        location = await resolve_storage(
            client,
            namespace,
            storage,
            referrer=referrer,
            field="spec.location.s3.credentialsSecret",
            credentials=credentials,
        )
    return ArtifactSource(
        location=location,
        key=key,
        volume_claim=storage.volume.claim_name if storage.volume else None,
        credentials_secret=storage.s3.credentials_secret if storage.s3 else None,
    )


def _phase_error(name: str, namespace: str, status: dict[str, Any]) -> RestoreError | None:
    phase = status.get("phase")
    if phase == BackupPhase.COMPLETED.value:
        return None
    if phase == BackupPhase.FAILED.value:
        why = status.get("message") or "no message"
        return RestoreError(
            "BackupFailed",
            f'Backup "{name}" in namespace "{namespace}" failed ({why}): there is nothing to '
            "restore (spec.backupRef)",
        )
    return WaitingForBackup(
        "BackupNotCompleted",
        f'Backup "{name}" in namespace "{namespace}" is {phase or "Pending"}; the restore starts '
        "when it has completed (spec.backupRef)",
    )


async def backup_source(
    client: AsyncClient, namespace: str, name: str, *, referrer: str, credentials: bool = True
) -> ArtifactSource:
    """The artifact of Backup `name`: it must exist and be Completed."""
    try:
        backup = await client.get(BackupResource, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            raise WaitingForBackup(
                "BackupNotFound",
                f'Backup "{name}" not found in namespace "{namespace}" (spec.backupRef); the '
                "restore starts once it exists and has completed",
            ) from None
        raise
    status = dict(backup.get("status") or {})
    if (problem := _phase_error(name, namespace, status)) is not None:
        raise problem
    spec = BackupSpec.model_validate(backup.get("spec") or {})
    key = status.get("artifactKey")
    if not key:
        raise RestoreError(
            "BackupIncomplete",
            f'Backup "{name}" is Completed but its status has no artifactKey: it cannot be '
            "restored through backupRef; use spec.location",
        )
    location = await resolve_storage(
        client,
        namespace,
        spec.storage,
        referrer=f"{referrer} → Backup {name}",
        field="spec.storage.s3.credentialsSecret",
        credentials=credentials,
    )
    return ArtifactSource(
        location=location,
        key=str(key),
        expected_sha256=status.get("sha256"),
        backup=name,
        volume_claim=spec.storage.volume.claim_name if spec.storage.volume else None,
        credentials_secret=spec.storage.s3.credentials_secret if spec.storage.s3 else None,
    )
