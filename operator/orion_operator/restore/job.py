"""The job executor for restores: a Job running `orion-operator restore-run`.

The Job is rendered by the backups' renderer (`backup.job.render_run_job`), so it has the same
safety properties: the database URL and S3 keys come from env `secretKeyRef`s, never arguments;
no service account token; a read-only root filesystem; owned by the Restore. A volume is mounted
read-only: a restore only reads artifacts.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from orion_operator.backup.job import (
    JobTemplate,
    RunJob,
    add_location_arguments,
    add_termination_log_argument,
    location_argv,
    parse_location,
    render_run_job,
)
from orion_operator.backup.storage import Location
from orion_operator.restore.run import RestoreRequest
from orion_operator.restore.verify import Check

RESTORE_LABEL = "orion.io/restore"
JOB_SUFFIX = "restore"  # `<restore>-restore`: never the name of a Backup's `<backup>-run` Job


@dataclass(frozen=True)
class RestoreRunArgs:
    """What `restore-run` needs besides secrets: the non-secret half of a RestoreRequest."""

    source: str  # "<namespace>/<name>" of the Restore, for logs
    key: str
    location: Location  # its S3 keys, if any, are not rendered: they come from the env
    overwrite: bool = False
    allow_added_nullable_columns: bool = False
    expected_sha256: str | None = None
    checks: tuple[Check, ...] = ()

    def to_argv(self) -> list[str]:
        argv = ["--source", self.source, "--key", self.key]
        if self.expected_sha256:
            argv += ["--sha256", self.expected_sha256]
        if self.overwrite:
            argv.append("--overwrite")
        if self.allow_added_nullable_columns:
            argv.append("--allow-added-nullable-columns")
        checks = [
            {"sql": c.sql, "min": c.min, "max": c.max, "equals": c.equals} for c in self.checks
        ]
        argv += ["--checks", json.dumps(checks, separators=(",", ":"))]
        return [*argv, *location_argv(self.location)]

    def request(self, database_url: str, resumed: bool = False) -> RestoreRequest:
        return RestoreRequest(
            database_url=database_url,
            location=self.location,
            key=self.key,
            overwrite=self.overwrite,
            expected_sha256=self.expected_sha256,
            checks=self.checks,
            allow_added_nullable_columns=self.allow_added_nullable_columns,
            resumed=resumed,
        )


def parse_checks(text: str) -> tuple[Check, ...]:
    """`--checks`: a JSON list of {"sql", "min", "max", "equals"}."""
    try:
        items = json.loads(text)
        return tuple(
            Check(str(item["sql"]), item.get("min"), item.get("max"), item.get("equals"))
            for item in items
        )
    except (ValueError, TypeError, KeyError) as error:
        raise argparse.ArgumentTypeError(
            f"--checks is not a JSON list of checks: {error}"
        ) from None


def add_restore_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `restore-run` options; `RestoreRunArgs.to_argv` renders exactly these."""
    parser.add_argument("--source", required=True, help="<namespace>/<name> of the Restore")
    parser.add_argument("--key", required=True, help="artifact key inside the storage")
    parser.add_argument(
        "--sha256", default=None, help="the Backup's sha256; the manifest must agree"
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--allow-added-nullable-columns", action="store_true")
    parser.add_argument(
        "--checks", type=parse_checks, default=(), help="verification queries, as JSON"
    )
    add_location_arguments(parser, "directory of the artifacts")
    add_termination_log_argument(parser)


def parse_restore_run_args(options: argparse.Namespace) -> RestoreRunArgs:
    return RestoreRunArgs(
        source=options.source,
        key=options.key,
        location=parse_location(options),
        overwrite=options.overwrite,
        allow_added_nullable_columns=options.allow_added_nullable_columns,
        expected_sha256=options.sha256,
        checks=options.checks,
    )


def render_restore_job(
    *,
    restore_name: str,
    restore_uid: str,
    namespace: str,
    run: RestoreRunArgs,
    template: JobTemplate,
) -> dict[str, Any]:
    """The restore Job, owned by the Restore so deleting the Restore deletes the Job."""
    return render_run_job(
        RunJob(
            owner_kind="Restore",
            owner_name=restore_name,
            owner_uid=restore_uid,
            namespace=namespace,
            subcommand="restore-run",
            args=run.to_argv(),
            location=run.location,
            label=RESTORE_LABEL,
            component="orion-restore",
            container="restore",
            name_suffix=JOB_SUFFIX,
        ),
        template,
    )
