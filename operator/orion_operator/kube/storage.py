"""A `spec.storage` block (Backups, schedules, Restores) as a storage location, keys included."""

from __future__ import annotations

from pathlib import Path

from lightkube import AsyncClient

from orion_operator.api.backup import DEFAULT_BACKUP_DIR, StorageSpec
from orion_operator.api.common import SecretKeyRef
from orion_operator.backup.storage import Location, S3Location, VolumeLocation
from orion_operator.kube.secrets import read_secret_key

S3_KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def storage_location(
    storage: StorageSpec, access_key_id: str | None = None, secret_access_key: str | None = None
) -> Location:
    """The location `storage` names; S3 without keys uses the process's own AWS credentials."""
    if storage.s3 is None:
        volume = storage.volume
        return VolumeLocation(Path(volume.path if volume else DEFAULT_BACKUP_DIR))
    s3 = storage.s3
    return S3Location(
        bucket=s3.bucket,
        prefix=s3.prefix,
        endpoint_url=s3.endpoint,
        region=s3.region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
    )


async def resolve_storage(
    client: AsyncClient,
    namespace: str,
    storage: StorageSpec,
    *,
    referrer: str,
    field: str,
    credentials: bool = True,
) -> Location:
    """`storage_location` with the S3 keys read from its credentials Secret (when `credentials`).

    `field` names the credentialsSecret field in errors, e.g. "spec.storage.s3.credentialsSecret".
    """
    secret = storage.s3.credentials_secret if storage.s3 else None
    if not (credentials and secret):
        return storage_location(storage)
    key_id, secret_key = [
        await read_secret_key(
            client, namespace, SecretKeyRef(name=secret, key=key), referrer=referrer, field=field
        )
        for key in S3_KEY_NAMES
    ]
    return storage_location(storage, key_id, secret_key)
