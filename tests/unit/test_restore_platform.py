"""Platform restores against a real PostgreSQL (and moto's S3): round trips and refusals."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from orion_operator.backup.storage import S3Location, VolumeLocation
from orion_operator.restore.errors import RestoreError, VerificationFailed
from orion_operator.restore.run import RestoreRequest, run_restore
from orion_operator.restore.verify import Check
from tests.conftest import AppDatabase
from tests.restore_support import (
    backup_of,
    flip_a_byte,
    fresh_database,
    plain_dump_of,
    remove,
    seed,
    url_of,
)
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_client


def request(url: str, location: Any, key: str, **options: Any) -> RestoreRequest:
    return RestoreRequest(database_url=url, location=location, key=key, **options)


@pytest.mark.parametrize("fmt", ["custom", "plain"])
async def test_platform_backup_restores_into_a_fresh_database_identically(
    app_database: AppDatabase, tmp_path: Path, fmt: str
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location, fmt=fmt)
    key = backup.artifact.uri.removeprefix(tmp_path.as_uri() + "/")
    stages: list[str] = []

    with fresh_database(app_database) as target:
        result = await run_restore(
            request(url_of(app_database, target), location, key),
            progress=lambda stage, done, total: stages.append(stage),
        )

        assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)
        assert result.database == target
        assert result.artifact.kind == "platform" and result.artifact.format == fmt
        assert result.artifact.sha256 == backup.artifact.sha256
        assert [(c.sql, c.value, c.passed) for c in result.verification] == [
            ('SELECT COUNT(*) FROM "Tenant"', 3, True)
        ]
        # The whole artifact was hashed before the restore pass began.
        assert stages.index("restoring") > stages.index("checking sha256")
        assert "checking sha256" not in stages[stages.index("restoring") :]


async def test_platform_restore_from_s3(app_database: AppDatabase, s3_endpoint: str) -> None:
    seed(app_database)
    bucket = f"restore-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    location = S3Location(
        bucket=bucket,
        prefix="orion",
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    backup = await backup_of(app_database, location)
    key = backup.artifact.uri.removeprefix(f"s3://{bucket}/orion/")
    with fresh_database(app_database) as target:
        result = await run_restore(request(url_of(app_database, target), location, key))
        assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)
    assert result.artifact.uri == backup.artifact.uri


async def test_a_corrupt_artifact_is_refused_before_the_target_is_touched(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    artifact = Path(backup.artifact.uri.removeprefix("file://"))
    key = str(artifact.relative_to(tmp_path))
    flip_a_byte(artifact)
    app_database.execute("""UPDATE "Tenant" SET name = 'changed since the backup'""")
    before = plain_dump_of(app_database, app_database.name)

    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database.url, location, key, overwrite=True))

    assert refused.value.reason == "ChecksumMismatch"
    assert backup.artifact.sha256 in refused.value.message
    assert "was not changed" in refused.value.message
    assert plain_dump_of(app_database, app_database.name) == before


async def test_an_artifact_replaced_after_the_checksum_pass_is_never_committed(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location, fmt="plain")
    artifact = Path(backup.artifact.uri.removeprefix("file://"))
    key = str(artifact.relative_to(tmp_path))

    def swap_it_when_the_restore_starts(stage: str, done: int, total: int | None) -> None:
        if stage == "restoring" and done == 0:
            # Same size, one statement different: only the second hash can tell.
            artifact.write_bytes(artifact.read_bytes().replace(b"Acme Corp", b"Evil Corp"))

    with fresh_database(app_database) as target:
        with pytest.raises(RestoreError) as refused:
            await run_restore(
                request(url_of(app_database, target), location, key),
                progress=swap_it_when_the_restore_starts,
            )
        assert refused.value.reason == "ChecksumMismatch"
        assert "changed after the checksum pass" in refused.value.message
        assert (
            app_database.server.psql(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                database=target,
            ).strip()
            == "0"
        )


async def test_a_non_empty_target_without_overwrite_is_refused_and_unchanged(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    app_database.execute("""DELETE FROM "AuditLog" WHERE id < 100""")
    before = plain_dump_of(app_database, app_database.name)

    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database.url, location, key))

    assert refused.value.reason == "TargetNotEmpty"
    assert f'database "{app_database.name}" is not empty' in refused.value.message
    assert "overwrite: true" in refused.value.message
    assert plain_dump_of(app_database, app_database.name) == before

    # An interrupted earlier attempt says so instead.
    with pytest.raises(RestoreError) as interrupted:
        await run_restore(request(app_database.url, location, key, resumed=True))
    assert interrupted.value.reason == "Interrupted"


@pytest.mark.parametrize("fmt", ["custom", "plain"])
async def test_overwrite_replaces_a_changed_database_with_the_backup(
    app_database: AppDatabase, tmp_path: Path, fmt: str
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    original = plain_dump_of(app_database, app_database.name)
    backup = await backup_of(app_database, location, fmt=fmt)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    app_database.execute(
        """DELETE FROM "Sale"; UPDATE "Product" SET price = 0;
           INSERT INTO "Tenant" (id, name) VALUES ('late', 'Late Inc')"""
    )

    result = await run_restore(request(app_database.url, location, key, overwrite=True))

    assert plain_dump_of(app_database, app_database.name) == original
    assert result.verification[0].value == 3


async def test_a_failing_restore_rolls_back_completely(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    # A table the backup does not know references "Tenant": --clean cannot drop "Tenant".
    app_database.execute(
        """CREATE TABLE "Invoice" (id text PRIMARY KEY, "tenantRef" text REFERENCES "Tenant"(id));
           INSERT INTO "Invoice" VALUES ('i1', 'acme');
           UPDATE "User" SET name = 'edited after the backup'"""
    )
    before = plain_dump_of(app_database, app_database.name)

    with pytest.raises(RestoreError) as failed:
        await run_restore(request(app_database.url, location, key, overwrite=True))

    assert failed.value.reason == "RestoreFailed"
    assert "pg_restore exited" in failed.value.message and "rolled back" in failed.value.message
    assert app_database.password not in failed.value.message
    assert plain_dump_of(app_database, app_database.name) == before


async def test_failed_verification_is_reported_with_the_results(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    checks = (
        Check('SELECT COUNT(*) FROM "Tenant"', min=1),
        Check('SELECT COUNT(*) FROM "User"', equals=99),
        Check('SELECT name FROM "Tenant" LIMIT 1', min=1),
        Check('DELETE FROM "Sale" RETURNING 1', min=1),
    )
    with fresh_database(app_database) as target:
        with pytest.raises(VerificationFailed) as failed:
            await run_restore(request(url_of(app_database, target), location, key, checks=checks))
        results = failed.value.result.verification
        assert [r.passed for r in results] == [True, False, False, False]
        assert results[1].value == 5 and results[1].message == "5 is not = 99"
        assert "not an integer" in (results[2].message or "")
        assert "read-only transaction" in (results[3].message or "")
        # Verification never changes the data.
        assert (
            app_database.server.psql('SELECT count(*) FROM "Sale"', database=target).strip() == "4"
        )
        assert "committed" in failed.value.message


async def test_wrong_password_and_missing_manifest_fail_clearly(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    wrong = app_database.url.replace(app_database.password, "hunter2-wrong")
    with pytest.raises(RestoreError) as unreachable:
        await run_restore(request(wrong, location, key))
    assert unreachable.value.reason == "DatabaseUnreachable"
    assert "password authentication failed" in unreachable.value.message
    assert "hunter2-wrong" not in unreachable.value.message

    remove(tmp_path / f"{key}.manifest.json")
    with pytest.raises(RestoreError) as unverifiable:
        await run_restore(request(app_database.url, location, key))
    assert unverifiable.value.reason == "ManifestMissing"


async def test_a_backups_own_sha256_must_agree_with_the_manifest(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    backup = await backup_of(app_database, location)
    key = str(Path(backup.artifact.uri.removeprefix("file://")).relative_to(tmp_path))
    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database.url, location, key, expected_sha256="0" * 64))
    assert refused.value.reason == "ChecksumMismatch"
