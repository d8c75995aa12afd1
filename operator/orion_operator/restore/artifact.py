"""The artifact to restore: its manifest, a full checksum pass, then a verified stream.

Nothing reaches the target before the artifact's bytes have hashed to the manifest's sha256. The
restore pass streams the artifact again (it is never held whole in memory) and hashes it again,
holding back its last chunk until the digest matches: an artifact replaced between the two passes
never gives the restoring tool a complete input, so it never commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from orion_operator.backup.storage import (
    MANIFEST_SUFFIX,
    Location,
    S3Location,
    StorageError,
    VolumeLocation,
    open_reader,
    read_manifest,
)
from orion_operator.restore.errors import RestoreError

# (stage, bytes done, bytes in total when known): what the CLI's progress bar shows.
Progress = Callable[[str, int, int | None], None]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FORMATS = {"platform": ("custom", "plain"), "tenant": ("zip",)}


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


def location_uri(location: Location, key: str) -> str:
    if isinstance(location, VolumeLocation):
        return location.directory.joinpath(key).absolute().as_uri()
    return location.uri(key)


@dataclass(frozen=True)
class Artifact:
    """A committed backup artifact and what its manifest says about it."""

    location: Location
    key: str
    uri: str
    kind: str  # platform | tenant
    format: str  # custom | plain | zip
    sha256: str
    size_bytes: int
    tenant_id: str | None
    row_counts: dict[str, int]
    manifest: dict[str, Any]


async def load_artifact(
    location: Location, key: str, *, expected_sha256: str | None = None
) -> Artifact:
    """Read and check the manifest beside `key`; `expected_sha256` (a Backup's) must agree."""
    uri = location_uri(location, key)
    try:
        manifest = await read_manifest(location, key)
    except StorageError as error:
        raise RestoreError(error.reason, error.message) from None
    if manifest is None:
        raise RestoreError(
            "ManifestMissing",
            f"no manifest beside {uri} (expected {key}{MANIFEST_SUFFIX}): without its sha256 the "
            "artifact cannot be verified, so it is not restored",
        )
    kind, fmt = str(manifest.get("kind") or ""), str(manifest.get("format") or "")
    sha256, size = str(manifest.get("sha256") or ""), manifest.get("sizeBytes")
    if fmt not in _FORMATS.get(kind, ()) or not _SHA256.match(sha256) or not isinstance(size, int):
        raise RestoreError(
            "ManifestInvalid",
            f"the manifest of {uri} does not describe a backup this operator can restore "
            f"(kind {kind!r}, format {fmt!r}, sha256 and sizeBytes required)",
        )
    if expected_sha256 and expected_sha256 != sha256:
        raise RestoreError(
            "ChecksumMismatch",
            f"the manifest of {uri} says sha256 {sha256}, the Backup's status says "
            f"{expected_sha256}: the artifact was replaced; nothing was restored",
        )
    tenant = manifest.get("tenant")
    if kind == "tenant" and not tenant:
        raise RestoreError("ManifestInvalid", f"the manifest of {uri} names no tenant")
    counts = manifest.get("rowCounts") or {}
    return Artifact(
        location=location,
        key=key,
        uri=uri,
        kind=kind,
        format=fmt,
        sha256=sha256,
        size_bytes=size,
        tenant_id=str(tenant) if tenant else None,
        row_counts={str(table): int(count) for table, count in counts.items()},
        manifest=manifest,
    )


def _mismatch(artifact: Artifact, digest: str, size: int, when: str) -> RestoreError:
    return RestoreError(
        "ChecksumMismatch",
        f"{artifact.uri} {when} has sha256 {digest} and {size} bytes, but its manifest says "
        f"sha256 {artifact.sha256} and {artifact.size_bytes} bytes: the artifact is corrupt or "
        "was replaced; the target database was not changed",
    )


async def _chunks(artifact: Artifact) -> AsyncGenerator[bytes, None]:
    try:
        # open_reader is an async generator: closing it closes the file or the S3 body.
        reader = cast(AsyncGenerator[bytes, None], open_reader(artifact.location, artifact.key))
        async with contextlib.aclosing(reader):
            async for chunk in reader:
                yield chunk
    except StorageError as error:
        raise RestoreError(error.reason, error.message) from None


async def checksum_pass(artifact: Artifact, progress: Progress = no_progress) -> None:
    """Hash every byte of the artifact; RestoreError("ChecksumMismatch") unless it matches."""
    digest, size = hashlib.sha256(), 0
    progress("checking sha256", 0, artifact.size_bytes)
    async with contextlib.aclosing(_chunks(artifact)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            progress("checking sha256", size, artifact.size_bytes)
    if digest.hexdigest() != artifact.sha256 or size != artifact.size_bytes:
        raise _mismatch(artifact, digest.hexdigest(), size, "as read")


async def verified_chunks(
    artifact: Artifact, progress: Progress = no_progress, stage: str = "restoring"
) -> AsyncGenerator[bytes, None]:
    """The artifact again, hashed again; the last chunk comes only once the digest matches."""
    digest, size = hashlib.sha256(), 0
    held: bytes | None = None
    progress(stage, 0, artifact.size_bytes)
    async with contextlib.aclosing(_chunks(artifact)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
            if held is not None:
                yield held
                size += len(held)
                progress(stage, size, artifact.size_bytes)
            held = chunk
    total = size + len(held or b"")
    if digest.hexdigest() != artifact.sha256 or total != artifact.size_bytes:
        raise _mismatch(artifact, digest.hexdigest(), total, "changed after the checksum pass: it")
    if held:
        yield held
        progress(stage, total, artifact.size_bytes)


async def download_verified(
    artifact: Artifact, path: Path, progress: Progress = no_progress
) -> Path:
    """Copy the artifact to `path` while hashing it; RestoreError unless it matches.

    Only for tenant ZIPs: a ZIP's directory sits at its end, so reading it needs random access.
    A local file (the pod's /tmp, or the machine's temporary directory) gives that with constant
    memory; the file is ours, so the checksum of what was written is the checksum of what is read.
    """
    digest, size = hashlib.sha256(), 0
    progress("downloading + sha256", 0, artifact.size_bytes)
    handle = await asyncio.to_thread(open, path, "wb")
    try:
        async with contextlib.aclosing(_chunks(artifact)) as chunks:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
                progress("downloading + sha256", size, artifact.size_bytes)
    finally:
        await asyncio.to_thread(handle.close)
    if digest.hexdigest() != artifact.sha256 or size != artifact.size_bytes:
        raise _mismatch(artifact, digest.hexdigest(), size, "as read")
    return path


def parse_source_uri(
    uri: str, *, s3_endpoint: str | None = None, s3_region: str | None = None
) -> tuple[Location, str]:
    """`s3://bucket/key`, `file:///dir/file` or a plain path → (location, key).

    S3 credentials are not taken here: boto3 reads them from the environment.
    """
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise RestoreError("InvalidSource", f"{uri!r} is not s3://<bucket>/<key>")
        return S3Location(bucket=bucket, endpoint_url=s3_endpoint, region=s3_region), key
    if "://" in uri and not uri.startswith("file://"):
        raise RestoreError(
            "InvalidSource", f"{uri!r}: use s3://<bucket>/<key>, file:///<path> or a path"
        )
    path = Path(unquote(uri.removeprefix("file://"))).absolute()
    return VolumeLocation(path.parent), path.name
