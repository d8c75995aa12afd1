"""`orion-operator restore --from ...` and `restore-run`, run as a person or a Job runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orion_operator.backup.storage import S3Location, VolumeLocation
from tests.conftest import AppDatabase
from tests.restore_support import backup_of, fresh_database, plain_dump_of, seed, url_of
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_client

ORION_OPERATOR = str(Path(sys.executable).parent / "orion-operator")


def orion(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [ORION_OPERATOR, *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def platform_artifact(app_database: AppDatabase, tmp_path: Path) -> Path:
    seed(app_database)
    backup = await backup_of(app_database, VolumeLocation(tmp_path))
    return Path(backup.artifact.uri.removeprefix("file://"))


def test_restore_from_a_file_restores_verifies_and_prints_the_outcome(
    app_database: AppDatabase, platform_artifact: Path
) -> None:
    with fresh_database(app_database) as target:
        done = orion(
            "restore",
            "--from",
            platform_artifact.as_uri(),
            env={"DATABASE_URL": url_of(app_database, target)},
        )
        assert done.returncode == 0, done.stderr
        assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)
    assert f'into database "{target}"' in done.stdout and "verified" in done.stdout
    assert 'SELECT COUNT(*) FROM "Tenant" = 3 (expected >= 1): passed' in done.stdout
    # Not a terminal: one line per stage instead of a redrawn bar.
    assert done.stderr.splitlines() == ["checking sha256 ...", "restoring ..."]
    assert app_database.password not in done.stdout + done.stderr


def test_restore_refuses_a_non_empty_database_unless_told_to_overwrite(
    app_database: AppDatabase, platform_artifact: Path
) -> None:
    refused = orion(
        "restore", "--from", str(platform_artifact), env={"DATABASE_URL": app_database.url}
    )
    assert refused.returncode == 1
    assert "restore failed: TargetNotEmpty" in refused.stderr and "--overwrite" in refused.stderr
    assert app_database.password not in refused.stdout + refused.stderr

    app_database.execute("""DELETE FROM "Sale" """)
    replaced = orion(
        "restore",
        "--from",
        str(platform_artifact),
        "--overwrite",
        "--no-progress",
        "--verify",
        'SELECT COUNT(*) FROM "Sale"',
        env={"DATABASE_URL": app_database.url},
    )
    assert replaced.returncode == 0, replaced.stderr
    assert 'SELECT COUNT(*) FROM "Sale" = 4 (expected >= 1): passed' in replaced.stdout
    assert replaced.stderr == ""


def test_restore_from_s3_takes_the_keys_from_the_environment(
    app_database: AppDatabase, tmp_path: Path, s3_endpoint: str
) -> None:
    seed(app_database)
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    location = S3Location(
        bucket=bucket,
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    backup = await_backup(app_database, location)
    with fresh_database(app_database) as target:
        done = orion(
            "restore",
            "--from",
            backup,
            "--s3-endpoint",
            s3_endpoint,
            "--s3-region",
            REGION,
            env={
                "DATABASE_URL": url_of(app_database, target),
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            },
        )
        assert done.returncode == 0, done.stderr
        assert plain_dump_of(app_database, target) == plain_dump_of(app_database, app_database.name)


def await_backup(app_database: AppDatabase, location: S3Location) -> str:
    import asyncio

    return asyncio.run(backup_of(app_database, location, fmt="plain")).artifact.uri


def test_restore_without_a_target_says_what_to_set(platform_artifact: Path) -> None:
    done = orion("restore", "--from", str(platform_artifact), env={})
    assert done.returncode == 1 and "$DATABASE_URL" in done.stderr


def test_restore_run_reports_a_failure_in_the_termination_log_without_the_password(
    app_database: AppDatabase, platform_artifact: Path, tmp_path: Path
) -> None:
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    wrong = app_database.url.replace(app_database.password, "hunter2-wrong")
    ran = orion(
        *("restore-run", "--source", "ns/r", "--key", platform_artifact.name),
        *("--volume", str(platform_artifact.parent)),
        *("--termination-log", str(termination_log)),
        env={"DATABASE_URL": wrong},
    )
    assert ran.returncode == 1
    message = termination_log.read_text()
    assert message.startswith("DatabaseUnreachable: ")
    assert "password authentication failed" in message
    assert json.loads(ran.stderr.strip().splitlines()[-1])["reason"] == "DatabaseUnreachable"
    assert "hunter2-wrong" not in message + ran.stdout + ran.stderr
