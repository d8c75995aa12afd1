"""Where backup artifacts live: a volume (the runbook's BACKUP_DIR) or an S3 bucket.

Artifacts are streamed in with constant memory and become visible only on `commit`: a volume
writes under a hidden `.<name>.partial` name and renames it into place; S3 uploads parts of a
multipart upload and completes it. Each artifact gets a `<key>.manifest.json` beside it.

boto3 and file I/O are blocking, so every such call runs in a worker thread (`asyncio.to_thread`).
No Kubernetes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from orion_operator.redaction import redact

log = logging.getLogger(__name__)

MiB = 2**20
DEFAULT_PART_SIZE_BYTES = 8 * MiB
MIN_PART_SIZE_BYTES = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's limit per multipart upload
VOLUME_WRITE_BUFFER_BYTES = 1 * MiB  # batch small chunks into one thread hop per MiB
READ_CHUNK_BYTES = 1 * MiB
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"

# Few retries: a backup that cannot reach its bucket should fail within seconds and say why.
_S3_CONFIG = Config(
    connect_timeout=10,
    read_timeout=120,
    retries={"max_attempts": 3, "mode": "standard"},
)


class StorageError(Exception):
    """A storage operation that failed; the message names the location and never a secret."""

    def __init__(self, message: str, reason: str = "StorageFailed") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class VolumeLocation:
    directory: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)

    def object_key(self, key: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def relative_key(self, object_key: str) -> str:
        prefix = self.prefix.strip("/")
        return object_key.removeprefix(f"{prefix}/") if prefix else object_key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    @property
    def where(self) -> str:
        return redact(self.endpoint_url or "AWS")


Location = VolumeLocation | S3Location


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    size_bytes: int
    sha256: str
    manifest_uri: str


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


def validate_key(key: str) -> str:
    """A relative, slash-separated key whose parts are plain names (no `..`, no hidden names)."""
    parts = PurePosixPath(key).parts
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(part.startswith(".") for part in parts)
        or key.endswith((MANIFEST_SUFFIX, PARTIAL_SUFFIX, "/"))
    ):
        raise StorageError(
            f'invalid artifact key "{key}": use a relative path like '
            '"platform/orion-20261128T054000Z.dump" without "..", hidden names or a reserved '
            f'"{MANIFEST_SUFFIX}" / "{PARTIAL_SUFFIX}" suffix',
            reason="InvalidKey",
        )
    return key


# ---------------------------------------------------------------------------------------------
# Volume helpers (all blocking; called through asyncio.to_thread)


def _volume_root(location: VolumeLocation) -> Path:
    # abspath, not resolve(): no filesystem access, so it is safe on the event loop.
    return Path(os.path.abspath(location.directory))


def _volume_path(location: VolumeLocation, key: str) -> Path:
    return _volume_root(location).joinpath(*PurePosixPath(key).parts)


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def _volume_error(location: VolumeLocation, action: str, error: OSError) -> StorageError:
    root = _volume_root(location)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left on volume {root} ({action})", "InsufficientSpace")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"volume {root} is not writable ({action}): {error.strerror}", "StorageNotWritable"
        )
    return StorageError(f"volume {root}: {action} failed: {error.strerror or error}")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_file(handle: IO[bytes], partial: Path, final: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(partial, final)
    _fsync_directory(final.parent)


def _write_file_atomically(final: Path, data: bytes) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(final)
    with open(partial, "wb") as handle:
        handle.write(data)
        _finish_file(handle, partial, final)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


# ---------------------------------------------------------------------------------------------
# S3 helpers


@functools.lru_cache(maxsize=32)
def _s3_client(location: S3Location) -> Any:
    # A Session per client: boto3's default session is not safe to use from several threads.
    addressing = {"addressing_style": "path"} if location.endpoint_url else {}
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name=location.region,
        aws_access_key_id=location.access_key_id,
        aws_secret_access_key=location.secret_access_key,
        config=_S3_CONFIG.merge(Config(s3=addressing)),
    )


_CREDENTIAL_ERRORS = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "InvalidToken",
        "ExpiredToken",
    }
)


def _client_error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _s3_error(location: S3Location, action: str, error: Exception) -> StorageError:
    bucket, where = location.bucket, location.where
    code = _client_error_code(error) if isinstance(error, ClientError) else ""
    reason = "StorageFailed"
    message = f'S3 bucket "{bucket}" at {where}: {action} failed: {error}'
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        message = f'S3 bucket "{bucket}" not reachable at {where}: {error}'
        reason = "StorageUnreachable"
    elif isinstance(error, NoCredentialsError):
        message = (
            f'no S3 credentials for bucket "{bucket}" at {where}: set an access key id and '
            "secret access key (or give the pod an IAM role)"
        )
        reason = "StorageCredentials"
    elif code == "NoSuchBucket":
        message, reason = f'S3 bucket "{bucket}" does not exist at {where}', "BucketNotFound"
    elif code in _CREDENTIAL_ERRORS:
        message = (
            f'S3 bucket "{bucket}" at {where} refused the credentials ({code}) while '
            f"trying to {action}: check the access key id and secret access key"
        )
        reason = "StorageCredentials"
    secrets = [location.secret_access_key] if location.secret_access_key else []
    return StorageError(redact(message, secrets), reason)


async def _s3_call(location: S3Location, action: str, method: str, **kwargs: Any) -> Any:
    """Run one boto3 call in a thread; botocore failures become a StorageError."""
    try:
        client = await asyncio.to_thread(_s3_client, location)
        return await asyncio.to_thread(getattr(client, method), **kwargs)
    except (BotoCoreError, ClientError) as error:
        raise _s3_error(location, action, error) from error


# ---------------------------------------------------------------------------------------------
# Writers


class _State(enum.Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class ArtifactWriter:
    """Streams one artifact; nothing is visible at `key` until `commit`.

    Use as `async with open_writer(...) as writer:`; leaving the block without a commit (an
    exception, or simply no commit) aborts.
    """

    def __init__(self, location: Location, key: str, buffer_limit_bytes: int) -> None:
        self.location = location
        self.key = validate_key(key)
        self.buffer_limit_bytes = buffer_limit_bytes
        self.max_buffered_bytes = 0  # high-water mark of the buffer, for tests and metrics
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._size_bytes = 0
        self._state = _State.OPEN

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def committed(self) -> bool:
        return self._state is _State.COMMITTED

    async def __aenter__(self) -> ArtifactWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state is not _State.OPEN:
            return
        if exc is None:
            await self.abort()
            return
        try:
            await self.abort()
        except StorageError as error:  # the original exception matters more
            log.warning("abort after failure did not finish key=%s error=%s", self.key, error)

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StorageError(f'writer for "{self.key}" is already {self._state.value}')

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        view = memoryview(chunk)
        while view:
            # Fill the buffer up to its limit, never beyond: memory stays at one buffer.
            room = self.buffer_limit_bytes - len(self._buffer)
            self._buffer += view[:room]
            self._hash.update(view[:room])
            self._size_bytes += min(room, len(view))
            view = view[room:]
            self.max_buffered_bytes = max(self.max_buffered_bytes, len(self._buffer))
            if len(self._buffer) >= self.buffer_limit_bytes:
                await self._flush(self._take_buffer())

    def _take_buffer(self) -> bytearray:
        data, self._buffer = self._buffer, bytearray()
        return data

    def _final_manifest(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        final = {**manifest, "sha256": self.sha256, "sizeBytes": self.size_bytes, "uri": self.uri}
        # Serialised before anything is published: a bad manifest must not leave a lone artifact.
        return final, (json.dumps(final, indent=2, default=str) + "\n").encode()

    async def commit(self, manifest: dict[str, Any]) -> StoredArtifact:
        self._check_open()
        _, manifest_bytes = self._final_manifest(manifest)
        manifest_uri = await self._publish(self._take_buffer(), manifest_bytes)
        self._state = _State.COMMITTED
        artifact = StoredArtifact(self.uri, self.size_bytes, self.sha256, manifest_uri)
        log.info(
            "artifact committed uri=%s size_bytes=%d sha256=%s",
            artifact.uri,
            artifact.size_bytes,
            artifact.sha256,
        )
        return artifact

    async def abort(self) -> None:
        if self._state is not _State.OPEN:
            return
        self._buffer = bytearray()
        await self._discard()
        self._state = _State.ABORTED

    @property
    def uri(self) -> str:
        raise NotImplementedError

    async def _flush(self, data: bytearray) -> None:
        raise NotImplementedError

    async def _publish(self, rest: bytearray, manifest_bytes: bytes) -> str:
        raise NotImplementedError

    async def _discard(self) -> None:
        raise NotImplementedError


class VolumeArtifactWriter(ArtifactWriter):
    def __init__(self, location: VolumeLocation, key: str) -> None:
        super().__init__(location, key, VOLUME_WRITE_BUFFER_BYTES)
        self.volume = location
        self.final_path = _volume_path(location, key)
        self.partial_path = _partial_path(self.final_path)
        self._handle: IO[bytes] | None = None

    @property
    def uri(self) -> str:
        return self.final_path.as_uri()

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.partial_path, "wb")  # noqa: SIM115 - closed on commit/abort
        return self._handle

    def _append(self, data: bytearray) -> None:
        self._open().write(data)

    async def _flush(self, data: bytearray) -> None:
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as error:
            raise _volume_error(self.volume, f'writing "{self.key}"', error) from error

    def _publish_sync(self, rest: bytearray, manifest_bytes: bytes) -> Path:
        handle = self._open()
        handle.write(rest)
        _finish_file(handle, self.partial_path, self.final_path)
        manifest_path = _volume_path(self.volume, manifest_key(self.key))
        try:
            _write_file_atomically(manifest_path, manifest_bytes)
        except OSError:
            # No artifact without its manifest: take it back, then report the failure.
            self.final_path.unlink(missing_ok=True)
            raise
        return manifest_path

    async def _publish(self, rest: bytearray, manifest_bytes: bytes) -> str:
        try:
            manifest_path = await asyncio.to_thread(self._publish_sync, rest, manifest_bytes)
        except OSError as error:
            raise _volume_error(self.volume, f'committing "{self.key}"', error) from error
        return manifest_path.as_uri()

    def _discard_sync(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self.partial_path.unlink(missing_ok=True)

    async def _discard(self) -> None:
        try:
            await asyncio.to_thread(self._discard_sync)
        except OSError as error:
            raise _volume_error(self.volume, f'removing partial "{self.key}"', error) from error


class S3ArtifactWriter(ArtifactWriter):
    """Buffers one part while the previous one uploads, and starts the multipart upload on the
    first part: the dump keeps streaming during an upload, and memory stays at two parts.

    An artifact smaller than one part is stored with a single PUT at commit.
    """

    def __init__(self, location: S3Location, key: str, part_size_bytes: int) -> None:
        if part_size_bytes < MIN_PART_SIZE_BYTES:
            raise StorageError(
                f"S3 part size {part_size_bytes} bytes is below S3's minimum of "
                f"{MIN_PART_SIZE_BYTES} bytes"
            )
        super().__init__(location, key, part_size_bytes)
        self.s3 = location
        self.object_key = location.object_key(key)
        self.upload_id: str | None = None
        self.uploading_bytes = 0  # the part being uploaded in the background, if any
        self._parts: list[dict[str, Any]] = []
        self._uploading: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return self.s3.uri(self.key)

    async def _call(self, action: str, method: str, **kwargs: Any) -> Any:
        return await _s3_call(self.s3, action, method, Bucket=self.s3.bucket, **kwargs)

    async def _upload_part(self, data: bytearray) -> None:
        if self.upload_id is None:
            created = await self._call(
                f'start the upload of "{self.object_key}"',
                "create_multipart_upload",
                Key=self.object_key,
            )
            self.upload_id = str(created["UploadId"])
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(
                f'artifact "{self.uri}" needs more than {MAX_PARTS} parts of '
                f"{self.buffer_limit_bytes} bytes; raise the part size"
            )
        uploaded = await self._call(
            f'upload part {number} of "{self.object_key}"',
            "upload_part",
            Key=self.object_key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": uploaded["ETag"]})

    async def _flush(self, data: bytearray) -> None:
        await self._settle()  # one upload at a time: parts complete in order, memory stays bounded
        self.uploading_bytes = len(data)
        self._uploading = asyncio.create_task(self._upload_part(data))

    async def _settle(self) -> None:
        """Wait for the part being uploaded; its failure is raised here."""
        task, self._uploading = self._uploading, None
        if task is not None:
            try:
                await task
            finally:
                self.uploading_bytes = 0

    async def _publish(self, rest: bytearray, manifest_bytes: bytes) -> str:
        await self._settle()
        if self.upload_id is None:
            await self._call(
                f'store "{self.object_key}"', "put_object", Key=self.object_key, Body=bytes(rest)
            )
        else:
            if rest:
                await self._upload_part(rest)
            await self._call(
                f'complete the upload of "{self.object_key}"',
                "complete_multipart_upload",
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        manifest_object = self.s3.object_key(manifest_key(self.key))
        try:
            await self._call(
                f'store the manifest "{manifest_object}"',
                "put_object",
                Key=manifest_object,
                Body=manifest_bytes,
                ContentType="application/json",
            )
        except StorageError:
            # No artifact without its manifest: take it back (best effort), then report.
            with contextlib.suppress(StorageError):
                await self._call(
                    f'remove "{self.object_key}"', "delete_object", Key=self.object_key
                )
            raise
        return self.s3.uri(manifest_key(self.key))

    async def _discard(self) -> None:
        # A part still uploading could land after the abort and keep its storage: let it finish.
        with contextlib.suppress(Exception):
            await self._settle()
        if self.upload_id is None:
            return
        try:
            await self._call(
                f'abort the upload of "{self.object_key}"',
                "abort_multipart_upload",
                Key=self.object_key,
                UploadId=self.upload_id,
            )
        except StorageError as error:
            cause = error.__cause__
            if not (isinstance(cause, ClientError) and _client_error_code(cause) == "NoSuchUpload"):
                raise
        self.upload_id = None
        self._parts = []


def open_writer(
    location: Location, key: str, *, part_size_bytes: int = DEFAULT_PART_SIZE_BYTES
) -> ArtifactWriter:
    """A writer for `key` (e.g. "platform/orion-20261128T054000Z.dump") at `location`.

    Nothing touches the storage until the first write; subdirectories are created as needed.
    """
    if isinstance(location, VolumeLocation):
        return VolumeArtifactWriter(location, key)
    return S3ArtifactWriter(location, key, part_size_bytes)


# ---------------------------------------------------------------------------------------------
# Reading, listing, deleting


async def delete_artifact(location: Location, key: str) -> None:
    """Delete an artifact and its manifest; a missing one is fine."""
    validate_key(key)
    keys = (key, manifest_key(key))
    if isinstance(location, VolumeLocation):

        def unlink_all() -> None:
            for each in keys:
                _volume_path(location, each).unlink(missing_ok=True)

        try:
            await asyncio.to_thread(unlink_all)
        except OSError as error:
            raise _volume_error(location, f'deleting "{key}"', error) from error
        return
    await _s3_call(
        location,
        f'delete "{location.object_key(key)}"',
        "delete_objects",
        Bucket=location.bucket,
        Delete={"Objects": [{"Key": location.object_key(each)} for each in keys], "Quiet": True},
    )


async def discard_incomplete(location: Location, key: str) -> None:
    """Remove what an interrupted writer for `key` left behind (partial files, open uploads)."""
    validate_key(key)
    if isinstance(location, VolumeLocation):

        def unlink_partials() -> None:
            for each in (key, manifest_key(key)):
                _partial_path(_volume_path(location, each)).unlink(missing_ok=True)

        try:
            await asyncio.to_thread(unlink_partials)
        except OSError as error:
            raise _volume_error(location, f'removing partials of "{key}"', error) from error
        return
    object_key = location.object_key(key)
    listed = await _s3_call(
        location,
        f'list uploads of "{object_key}"',
        "list_multipart_uploads",
        Bucket=location.bucket,
        Prefix=object_key,
    )
    for upload in listed.get("Uploads", []):
        if upload.get("Key") != object_key:
            continue
        try:
            await _s3_call(
                location,
                f'abort an upload of "{object_key}"',
                "abort_multipart_upload",
                Bucket=location.bucket,
                Key=object_key,
                UploadId=upload["UploadId"],
            )
        except StorageError as error:
            cause = error.__cause__
            if not (isinstance(cause, ClientError) and _client_error_code(cause) == "NoSuchUpload"):
                raise


async def read_manifest(location: Location, key: str) -> dict[str, Any] | None:
    """The manifest committed with `key`, or None when there is none."""
    validate_key(key)
    if isinstance(location, VolumeLocation):
        path = _volume_path(location, manifest_key(key))
        try:
            text = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _volume_error(location, f'reading the manifest of "{key}"', error) from error
    else:
        object_key = location.object_key(manifest_key(key))
        try:
            client = await asyncio.to_thread(_s3_client, location)
            response = await asyncio.to_thread(
                client.get_object, Bucket=location.bucket, Key=object_key
            )
            text = await asyncio.to_thread(response["Body"].read)
        except ClientError as error:
            if _client_error_code(error) in ("NoSuchKey", "404"):
                return None
            raise _s3_error(location, f'read "{object_key}"', error) from error
        except BotoCoreError as error:
            raise _s3_error(location, f'read "{object_key}"', error) from error
    try:
        manifest = json.loads(text)
    except ValueError as error:
        raise StorageError(f'manifest of "{key}" is not valid JSON: {error}') from error
    if not isinstance(manifest, dict):
        raise StorageError(f'manifest of "{key}" is not a JSON object')
    return manifest


async def open_reader(
    location: Location, key: str, *, chunk_size_bytes: int = READ_CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """Stream a committed artifact back: `async for chunk in open_reader(location, key)`."""
    validate_key(key)
    if isinstance(location, VolumeLocation):
        path = _volume_path(location, key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise StorageError(
                f'artifact "{key}" not found on volume {_volume_root(location)}', "ArtifactNotFound"
            ) from None
        except OSError as error:
            raise _volume_error(location, f'opening "{key}"', error) from error
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size_bytes):
                yield chunk
        except OSError as error:
            raise _volume_error(location, f'reading "{key}"', error) from error
        finally:
            await asyncio.to_thread(handle.close)
        return

    object_key = location.object_key(key)
    try:
        client = await asyncio.to_thread(_s3_client, location)
        response = await asyncio.to_thread(
            client.get_object, Bucket=location.bucket, Key=object_key
        )
    except ClientError as error:
        if _client_error_code(error) in ("NoSuchKey", "404"):
            raise StorageError(
                f'artifact "{object_key}" not found in S3 bucket "{location.bucket}" at '
                f"{location.where}",
                "ArtifactNotFound",
            ) from None
        raise _s3_error(location, f'read "{object_key}"', error) from error
    except BotoCoreError as error:
        raise _s3_error(location, f'read "{object_key}"', error) from error
    body = response["Body"]
    try:
        while chunk := await asyncio.to_thread(body.read, chunk_size_bytes):
            yield chunk
    except (BotoCoreError, ClientError) as error:
        raise _s3_error(location, f'read "{object_key}"', error) from error
    finally:
        await asyncio.to_thread(body.close)


async def free_space(location: Location) -> tuple[int, int] | None:
    """(free_bytes, total_bytes) of the volume's filesystem; None for S3, which has no such limit.

    Free bytes are those available to an unprivileged writer, as `df` shows them.
    """
    if not isinstance(location, VolumeLocation):
        return None
    root = _volume_root(location)
    try:
        usage = await asyncio.to_thread(lambda: shutil.disk_usage(_nearest_existing(root)))
    except OSError as error:
        raise _volume_error(location, "measuring free space", error) from error
    return usage.free, usage.total


def _is_artifact_name(name: str) -> bool:
    return not name.startswith(".") and not name.endswith((MANIFEST_SUFFIX, PARTIAL_SUFFIX))


async def list_artifacts(location: Location, prefix: str = "") -> list[str]:
    """Keys of committed artifacts starting with `prefix` (no partials, no manifests), sorted."""
    if isinstance(location, VolumeLocation):
        root = _volume_root(location)
        base = root.joinpath(*PurePosixPath(prefix.rpartition("/")[0]).parts)

        def walk() -> list[str]:
            found = []
            for directory, subdirectories, files in os.walk(base):
                subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
                for name in files:
                    if _is_artifact_name(name):
                        key = (Path(directory) / name).relative_to(root).as_posix()
                        if key.startswith(prefix):
                            found.append(key)
            return found

        try:
            return sorted(await asyncio.to_thread(walk))
        except OSError as error:
            raise _volume_error(location, f'listing "{prefix}"', error) from error

    def list_pages(client: Any) -> list[str]:
        paginator = client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.object_key(prefix)):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    try:
        client = await asyncio.to_thread(_s3_client, location)
        object_keys = await asyncio.to_thread(list_pages, client)
    except (BotoCoreError, ClientError) as error:
        raise _s3_error(location, f'list "{location.object_key(prefix)}"', error) from error
    keys = (location.relative_key(each) for each in object_keys)
    return sorted(k for k in keys if _is_artifact_name(PurePosixPath(k).name))
