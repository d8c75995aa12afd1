"""Backup storage on real parts: a real filesystem (tmp_path) and moto's S3 server over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orion_operator.backup.storage import (
    MiB,
    S3Location,
    StorageError,
    VolumeLocation,
    delete_artifact,
    discard_incomplete,
    free_space,
    list_artifacts,
    open_reader,
    open_writer,
    read_manifest,
)
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_client, s3_endpoint

__all__ = ["s3_endpoint"]  # the session fixture, imported so pytest finds it here

KEY = "platform/orion-20261128T054000Z.dump"
MANIFEST = {"kind": "platform", "source": "orion/nightly", "format": "custom"}
PART = 5 * MiB  # S3's minimum part size, so a few MiB already need several parts


def payload(size_bytes: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size_bytes)


def chunks(data: bytes, size_bytes: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size_bytes):
        yield data[start : start + size_bytes]


async def read_back(location: Any, key: str) -> bytes:
    return b"".join([chunk async for chunk in open_reader(location, key)])


@pytest.fixture
def volume(tmp_path: Path) -> VolumeLocation:
    return VolumeLocation(tmp_path / "backups")


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return s3_client(s3_endpoint)


@pytest.fixture
def bucket_location(s3: Any, s3_endpoint: str) -> S3Location:
    bucket = f"orion-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    return S3Location(
        bucket=bucket,
        prefix="orion",
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )


def uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


async def upload_started(s3: Any, bucket: str, timeout_seconds: float = 10) -> list[dict[str, Any]]:
    """The bucket's open uploads, once there is one: parts upload in the background."""
    deadline = time.monotonic() + timeout_seconds
    found = uploads(s3, bucket)
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        found = uploads(s3, bucket)
    return found


def object_keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- volume (the runbook's BACKUP_DIR) -----------------------------------------------------------


async def test_volume_commit_makes_a_streamed_dump_visible_with_its_manifest(
    volume: VolumeLocation,
):
    data = payload(6 * MiB + 123)
    async with open_writer(volume, KEY) as writer:
        for chunk in chunks(data):
            await writer.write(chunk)
        assert writer.size_bytes == len(data)
        assert writer.sha256 == hashlib.sha256(data).hexdigest()
        artifact = await writer.commit(MANIFEST)

    path = volume.directory / KEY
    assert path.read_bytes() == data
    assert artifact.size_bytes == len(data)
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact.uri == path.resolve().as_uri()
    assert artifact.uri.startswith("file:///")
    assert artifact.manifest_uri == (volume.directory / f"{KEY}.manifest.json").resolve().as_uri()

    manifest = json.loads((volume.directory / f"{KEY}.manifest.json").read_text())
    assert manifest == {
        **MANIFEST,
        "sha256": artifact.sha256,
        "sizeBytes": len(data),
        "uri": artifact.uri,
    }
    assert await read_manifest(volume, KEY) == manifest
    assert await list_artifacts(volume, "platform/") == [KEY]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        path.name,
        f"{path.name}.manifest.json",
    ]


async def test_volume_before_commit_only_a_hidden_partial_exists(volume: VolumeLocation):
    writer = open_writer(volume, KEY)
    for chunk in chunks(payload(3 * MiB)):
        await writer.write(chunk)

    directory = volume.directory / "platform"
    assert [p.name for p in directory.iterdir()] == [".orion-20261128T054000Z.dump.partial"]
    assert not (volume.directory / KEY).exists()
    assert await list_artifacts(volume, "") == []
    assert await read_manifest(volume, KEY) is None

    await writer.commit(MANIFEST)
    assert await list_artifacts(volume, "") == [KEY]
    assert not (directory / ".orion-20261128T054000Z.dump.partial").exists()


async def test_volume_abort_removes_the_partial_and_is_idempotent(volume: VolumeLocation):
    writer = open_writer(volume, KEY)
    for chunk in chunks(payload(2 * MiB)):
        await writer.write(chunk)
    await writer.abort()
    await writer.abort()

    assert [path for path in volume.directory.rglob("*") if path.is_file()] == []
    with pytest.raises(StorageError, match="aborted"):
        await writer.write(b"more")


async def test_volume_exception_inside_the_writer_block_aborts(volume: VolumeLocation):
    with pytest.raises(RuntimeError, match="pg_dump exited with 1"):
        async with open_writer(volume, KEY) as writer:
            await writer.write(payload(2 * MiB))
            raise RuntimeError("pg_dump exited with 1")

    assert [path for path in volume.directory.rglob("*") if path.is_file()] == []
    assert await list_artifacts(volume, "") == []


async def test_volume_leaving_the_block_without_commit_leaves_nothing(volume: VolumeLocation):
    async with open_writer(volume, KEY) as writer:
        await writer.write(b"half a dump")
    assert [path for path in volume.directory.rglob("*") if path.is_file()] == []


async def test_volume_reader_returns_the_same_bytes_and_delete_removes_both_files(
    volume: VolumeLocation,
):
    data = payload(3 * MiB + 5)
    async with open_writer(volume, KEY) as writer:
        for chunk in chunks(data, 100_000):
            await writer.write(chunk)
        await writer.commit(MANIFEST)

    assert await read_back(volume, KEY) == data

    await delete_artifact(volume, KEY)
    assert [path for path in volume.directory.rglob("*") if path.is_file()] == []
    assert await read_manifest(volume, KEY) is None
    await delete_artifact(volume, KEY)  # missing is fine
    with pytest.raises(StorageError, match="not found") as raised:
        await read_back(volume, KEY)
    assert raised.value.reason == "ArtifactNotFound"


async def test_volume_recommit_of_the_same_key_replaces_the_artifact(volume: VolumeLocation):
    for content in (b"first run", b"second run"):
        async with open_writer(volume, KEY) as writer:
            await writer.write(content)
            await writer.commit(MANIFEST)
    assert (volume.directory / KEY).read_bytes() == b"second run"
    assert await list_artifacts(volume, "platform/orion-") == [KEY]


async def test_volume_listing_filters_by_prefix_and_skips_partials_and_manifests(
    volume: VolumeLocation,
):
    for key in (KEY, "platform/orion-20261129T054000Z.sql", "tenants/acme/orion-nightly.zip"):
        async with open_writer(volume, key) as writer:
            await writer.write(b"x")
            await writer.commit({})
    leftover = open_writer(volume, "platform/orion-interrupted.dump")
    await leftover.write(b"partial")

    assert await list_artifacts(volume, "platform/") == [
        KEY,
        "platform/orion-20261129T054000Z.sql",
    ]
    assert await list_artifacts(volume, "tenants/acme/") == ["tenants/acme/orion-nightly.zip"]
    assert len(await list_artifacts(volume, "")) == 3
    assert await list_artifacts(volume, "nothing/here/") == []

    await discard_incomplete(volume, "platform/orion-interrupted.dump")
    assert not (volume.directory / "platform" / ".orion-interrupted.dump.partial").exists()
    await leftover.abort()


async def test_volume_free_space_matches_the_filesystem(volume: VolumeLocation, tmp_path: Path):
    measured = await free_space(volume)  # the directory does not exist yet: its parent counts
    assert measured is not None
    free_bytes, total_bytes = measured
    usage = shutil.disk_usage(tmp_path)
    assert 0 < free_bytes <= total_bytes
    assert total_bytes == usage.total
    assert abs(free_bytes - usage.free) < 64 * MiB


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside.dump", "platform/../../x", "platform/.x", "a.manifest.json"],
)
async def test_unsafe_keys_are_refused(volume: VolumeLocation, key: str):
    with pytest.raises(StorageError, match="invalid artifact key") as raised:
        open_writer(volume, key)
    assert raised.value.reason == "InvalidKey"


# --- S3 ----------------------------------------------------------------------------------------


async def test_s3_commit_completes_a_multipart_upload_with_its_manifest(
    bucket_location: S3Location, s3: Any
):
    bucket = bucket_location.bucket
    data = payload(12 * MiB + 321)
    writer = open_writer(bucket_location, KEY, part_size_bytes=PART)
    for chunk in chunks(data):
        await writer.write(chunk)

    # Before commit: nothing at the key, nothing listed, one upload in progress.
    assert object_keys(s3, bucket) == []
    assert await list_artifacts(bucket_location, "") == []
    assert [u["Key"] for u in uploads(s3, bucket)] == [f"orion/{KEY}"]

    artifact = await writer.commit(MANIFEST)

    assert uploads(s3, bucket) == []
    assert artifact.uri == f"s3://{bucket}/orion/{KEY}"
    assert artifact.manifest_uri == f"s3://{bucket}/orion/{KEY}.manifest.json"
    assert artifact.size_bytes == len(data)
    body = s3.get_object(Bucket=bucket, Key=f"orion/{KEY}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == artifact.sha256 == hashlib.sha256(data).hexdigest()
    stored = s3.get_object(Bucket=bucket, Key=f"orion/{KEY}.manifest.json")["Body"].read()
    manifest = json.loads(stored)
    assert manifest == {
        **MANIFEST,
        "sha256": artifact.sha256,
        "sizeBytes": len(data),
        "uri": artifact.uri,
    }
    assert await read_manifest(bucket_location, KEY) == manifest
    assert await list_artifacts(bucket_location, "platform/") == [KEY]


async def test_s3_small_artifact_is_one_put_without_multipart(bucket_location: S3Location, s3: Any):
    async with open_writer(bucket_location, KEY) as writer:
        await writer.write(b"tiny dump")
        assert uploads(s3, bucket_location.bucket) == []
        artifact = await writer.commit({})
    assert artifact.size_bytes == 9
    assert await read_back(bucket_location, KEY) == b"tiny dump"


async def test_s3_abort_leaves_no_multipart_upload_and_no_object(
    bucket_location: S3Location, s3: Any
):
    writer = open_writer(bucket_location, KEY, part_size_bytes=PART)
    for chunk in chunks(payload(6 * MiB)):
        await writer.write(chunk)
    assert len(await upload_started(s3, bucket_location.bucket)) == 1

    await writer.abort()
    await writer.abort()

    assert uploads(s3, bucket_location.bucket) == []
    assert object_keys(s3, bucket_location.bucket) == []


async def test_s3_exception_inside_the_writer_block_aborts(bucket_location: S3Location, s3: Any):
    with pytest.raises(RuntimeError, match="pg_dump exited with 1"):
        async with open_writer(bucket_location, KEY, part_size_bytes=PART) as writer:
            for chunk in chunks(payload(6 * MiB), MiB):
                await writer.write(chunk)
            raise RuntimeError("pg_dump exited with 1")

    assert uploads(s3, bucket_location.bucket) == []
    assert object_keys(s3, bucket_location.bucket) == []


async def test_s3_writer_holds_one_part_and_one_uploading_at_most(
    bucket_location: S3Location, s3: Any
):
    part_size = 8 * MiB
    total = 40 * MiB
    chunk = payload(MiB + 7)  # not a divisor of the part size: parts fill across chunk edges
    expected = hashlib.sha256()
    written = 0
    async with open_writer(bucket_location, KEY, part_size_bytes=part_size) as writer:
        while written < total:
            piece = chunk[: total - written]
            await writer.write(piece)
            expected.update(piece)
            written += len(piece)
            assert writer.buffered_bytes <= part_size
            assert writer.uploading_bytes <= part_size  # type: ignore[attr-defined]
        assert writer.max_buffered_bytes == part_size
        artifact = await writer.commit({})

    assert artifact.size_bytes == total
    assert artifact.sha256 == expected.hexdigest()
    head = s3.head_object(Bucket=bucket_location.bucket, Key=f"orion/{KEY}")
    assert head["ContentLength"] == total
    assert head["ETag"].endswith('-5"')  # five parts of 8 MiB


async def test_s3_reader_returns_the_same_bytes_and_delete_removes_both_objects(
    bucket_location: S3Location, s3: Any
):
    data = payload(7 * MiB + 11)
    async with open_writer(bucket_location, KEY, part_size_bytes=PART) as writer:
        for chunk in chunks(data, 256 * 1024):
            await writer.write(chunk)
        await writer.commit(MANIFEST)
    assert len(object_keys(s3, bucket_location.bucket)) == 2

    assert await read_back(bucket_location, KEY) == data

    await delete_artifact(bucket_location, KEY)
    assert object_keys(s3, bucket_location.bucket) == []
    assert await read_manifest(bucket_location, KEY) is None
    await delete_artifact(bucket_location, KEY)  # missing is fine
    with pytest.raises(StorageError, match="not found"):
        await read_back(bucket_location, KEY)


async def test_s3_discard_incomplete_aborts_an_interrupted_upload(
    bucket_location: S3Location, s3: Any
):
    interrupted = open_writer(bucket_location, KEY, part_size_bytes=PART)
    await interrupted.write(payload(PART))
    assert len(await upload_started(s3, bucket_location.bucket)) == 1

    await discard_incomplete(bucket_location, KEY)  # what a restarted operator does

    assert uploads(s3, bucket_location.bucket) == []
    await interrupted.abort()  # the upload is gone already: still fine


async def test_s3_free_space_is_not_measured(bucket_location: S3Location):
    assert await free_space(bucket_location) is None


async def test_s3_unreachable_endpoint_fails_clearly_without_the_secret_key():
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzzSecret"
    location = S3Location(
        bucket="orion-backups",
        endpoint_url="http://127.0.0.1:1",
        region=REGION,
        access_key_id="AKIAORIONTEST",
        secret_access_key=secret,
    )
    assert secret not in repr(location)

    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        async with open_writer(location, KEY) as writer:
            await writer.write(b"dump")
            await writer.commit({})
    assert time.monotonic() - started < 15

    message = str(raised.value)
    assert message.startswith('S3 bucket "orion-backups" not reachable at http://127.0.0.1:1: ')
    assert raised.value.reason == "StorageUnreachable"
    assert secret not in message

    with pytest.raises(StorageError, match="not reachable") as listed:
        await list_artifacts(location, "platform/")
    assert secret not in str(listed.value)


async def test_s3_missing_bucket_is_named(s3_endpoint: str):
    location = S3Location(
        bucket="no-such-bucket",
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    with pytest.raises(StorageError, match='S3 bucket "no-such-bucket" does not exist') as raised:
        async with open_writer(location, KEY) as writer:
            await writer.write(b"dump")
            await writer.commit({})
    assert raised.value.reason == "BucketNotFound"
    assert SECRET_ACCESS_KEY not in str(raised.value)
