"""The restore Job's pure parts: command line, manifest, and the terminal's progress bar."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from orion_operator.backup.job import JobTemplate, job_name
from orion_operator.backup.storage import S3Location, VolumeLocation
from orion_operator.cli import build_parser
from orion_operator.restore.artifact import parse_source_uri
from orion_operator.restore.errors import RestoreError
from orion_operator.restore.job import (
    RestoreRunArgs,
    add_restore_run_arguments,
    parse_restore_run_args,
    render_restore_job,
)
from orion_operator.restore.progress import TerminalProgress, render_bar
from orion_operator.restore.verify import Check

TEMPLATE = JobTemplate(
    image="registry.example/orion-operator:0.1.0",
    database_secret=("restore-target", "DATABASE_URL"),
    s3_credentials_secret="s3-creds",
    volume_claim="backups",
    backoff_limit=0,
    active_deadline_seconds=3600,
    resources={"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
    volume_read_only=True,
)


def run_args(location: VolumeLocation | S3Location, **options: object) -> RestoreRunArgs:
    return RestoreRunArgs(
        source="shop/rollback",
        key="tenants/acme/shop-acme-now.zip",
        location=location,
        expected_sha256="ab" * 32,
        checks=(Check('SELECT COUNT(*) FROM "Tenant"', min=1), Check("SELECT 2", min=1, max=3)),
        **options,  # type: ignore[arg-type]
    )


def parsed(argv: list[str]) -> RestoreRunArgs:
    parser = argparse.ArgumentParser()
    add_restore_run_arguments(parser)
    return parse_restore_run_args(parser.parse_args(argv))


@pytest.mark.parametrize(
    "location",
    [
        VolumeLocation(Path("/var/backups/orion")),
        S3Location(bucket="b", prefix="p/q", endpoint_url="http://s3:9000", region="eu-west-1"),
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_the_command_line_carries_the_whole_restore_and_parses_back(location, overwrite):
    run = run_args(location, overwrite=overwrite, allow_added_nullable_columns=overwrite)
    assert parsed(run.to_argv()) == run


def test_the_restore_job_is_owned_by_the_restore_and_takes_secrets_from_secret_refs():
    location = S3Location(bucket="b", access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t")
    job = render_restore_job(
        restore_name="rollback",
        restore_uid="uid-9",
        namespace="shop",
        run=run_args(location),
        template=TEMPLATE,
    )
    assert job["metadata"]["name"] == "rollback-restore"
    assert job["metadata"]["labels"]["orion.io/restore"] == "rollback"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Restore",
        "rollback",
        "uid-9",
        True,
    )
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["command"] == ["orion-operator", "restore-run"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {each["name"]: each["valueFrom"]["secretKeyRef"] for each in container["env"]}
    assert env == {
        "DATABASE_URL": {"name": "restore-target", "key": "DATABASE_URL"},
        "AWS_ACCESS_KEY_ID": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"},
        "AWS_SECRET_ACCESS_KEY": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"},
    }
    text = json.dumps(job)
    assert "s3cr3t" not in text and "AKIAEXAMPLE" not in text


def test_a_volume_is_mounted_read_only_where_the_command_line_reads():
    job = render_restore_job(
        restore_name="rollback",
        restore_uid="uid-9",
        namespace="shop",
        run=run_args(VolumeLocation(Path("/var/backups/orion"))),
        template=TEMPLATE,
    )
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "backups")
    assert mount == {"name": "backups", "mountPath": "/var/backups/orion", "readOnly": True}
    claim = next(v for v in pod["volumes"] if v["name"] == "backups")
    assert claim["persistentVolumeClaim"] == {"claimName": "backups", "readOnly": True}
    assert container["args"][container["args"].index("--volume") + 1] == "/var/backups/orion"


def test_a_backup_and_a_restore_of_the_same_name_get_different_jobs():
    assert job_name("nightly") != job_name("nightly", "restore")
    long = "r" * 70
    assert len(job_name(long, "restore")) <= 63 and job_name(long, "restore").endswith("-restore")


def test_both_commands_are_on_the_entry_point():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"restore", "restore-run", "backup-run"} <= set(commands)


@pytest.mark.parametrize(
    ("uri", "where", "key"),
    [
        ("s3://orion-backups/prod/platform/x.dump", "orion-backups", "prod/platform/x.dump"),
        ("file:///var/backups/platform/x.dump", Path("/var/backups/platform"), "x.dump"),
        ("/var/backups/tenants/acme/y.zip", Path("/var/backups/tenants/acme"), "y.zip"),
    ],
)
def test_source_uris(uri, where, key):
    location, parsed_key = parse_source_uri(uri, s3_endpoint="http://s3:9000")
    assert parsed_key == key
    if isinstance(location, S3Location):
        assert (location.bucket, location.endpoint_url) == (where, "http://s3:9000")
    else:
        assert location.directory == where


def test_unknown_schemes_are_refused():
    with pytest.raises(RestoreError, match="s3://<bucket>/<key>"):
        parse_source_uri("https://example.test/x.dump")


def test_the_progress_bar_shows_stage_fraction_amounts_and_rate():
    line = render_bar("restoring", 45 * 2**20, 100 * 2**20, seconds=2.0, width=20)
    assert line.startswith("restoring")
    assert "[#########...........]" in line and "45%" in line
    assert "45.0/100.0 MiB" in line and "22.5 MiB/s" in line


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_and_ends_each_stage_with_a_newline():
    out = FakeTerminal()
    progress = TerminalProgress(out, interval_seconds=0)
    progress("checking sha256", 0, 10)
    progress("checking sha256", 10, 10)
    progress("restoring", 10, 10)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 2 and text.count("\r") == 3 and "100%" in text


def test_without_a_terminal_only_stage_names_are_printed():
    out = io.StringIO()
    progress = TerminalProgress(out)
    progress("checking sha256", 0, 10)
    progress("checking sha256", 10, 10)
    progress("restoring", 5, 10)
    assert out.getvalue() == "checking sha256 ...\nrestoring ...\n"
