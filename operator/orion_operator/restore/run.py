"""One restore, start to finish: the same code inline in the operator, in a Job and at a terminal.

1. The manifest beside the artifact says what it is (platform custom/plain, or tenant ZIP) and
   its sha256; a Backup's own sha256, when known, must agree.
2. The target is checked read-only: reachable, and empty unless `overwrite` (a platform restore)
   or without rows of the tenant unless `overwrite` (a tenant restore).
3. A full pass hashes the artifact; nothing touches the target unless it matches.
4. The restore pass, all or nothing (see `platform` and `tenant`).
5. The verification queries; a failure raises VerificationFailed, carrying the result.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orion_operator.backup.job import write_termination_message
from orion_operator.backup.storage import Location
from orion_operator.restore.artifact import (
    Artifact,
    Progress,
    checksum_pass,
    download_verified,
    load_artifact,
    no_progress,
    verified_chunks,
)
from orion_operator.restore.database import database_name
from orion_operator.restore.errors import RestoreError, VerificationFailed
from orion_operator.restore.platform import check_platform_target, restore_platform
from orion_operator.restore.tenant import preflight_tenant, restore_tenant
from orion_operator.restore.verify import DEFAULT_CHECKS, Check, CheckResult, run_checks, summary


@dataclass(frozen=True)
class RestoreRequest:
    database_url: str
    location: Location
    key: str
    overwrite: bool = False
    expected_sha256: str | None = None  # e.g. the Backup's status.sha256
    checks: tuple[Check, ...] = DEFAULT_CHECKS
    allow_added_nullable_columns: bool = False
    resumed: bool = False  # an earlier attempt of the same restore was interrupted
    work_dir: Path | None = None  # where a tenant ZIP is kept while it is restored
    pg_bindir: Path | None = None


@dataclass(frozen=True)
class RestoreResult:
    artifact: Artifact
    database: str  # the target's name, never its URL
    started_at: datetime.datetime
    finished_at: datetime.datetime  # the restore itself, before verification
    row_counts: dict[str, int] = field(default_factory=dict)  # tenant restores
    verification: list[CheckResult] = field(default_factory=list)

    @property
    def message(self) -> str:
        what = (
            f'tenant "{self.artifact.tenant_id}" ({sum(self.row_counts.values())} rows)'
            if self.artifact.kind == "tenant"
            else f"platform backup ({self.artifact.format})"
        )
        seconds = (self.finished_at - self.started_at).total_seconds()
        checked = f"; {summary(self.verification)}" if self.verification else ""
        return (
            f'restored {what} from {self.artifact.uri} into database "{self.database}" in '
            f"{seconds:.1f} s, sha256 {self.artifact.sha256[:12]}… verified{checked}"
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def run_restore(request: RestoreRequest, progress: Progress = no_progress) -> RestoreResult:
    """Restore and verify; RestoreError (VerificationFailed after a committed restore) otherwise."""
    database = database_name(request.database_url)
    artifact = await load_artifact(
        request.location, request.key, expected_sha256=request.expected_sha256
    )
    started = _now()
    row_counts: dict[str, int] = {}
    if artifact.kind == "platform":
        await check_platform_target(
            request.database_url, overwrite=request.overwrite, resumed=request.resumed
        )
        await checksum_pass(artifact, progress)
        await restore_platform(
            request.database_url,
            artifact.format,
            verified_chunks(artifact, progress),
            overwrite=request.overwrite,
            pg_bindir=request.pg_bindir,
        )
    else:
        tenant_id = artifact.tenant_id or ""
        await preflight_tenant(request.database_url, tenant_id, overwrite=request.overwrite)
        directory = Path(
            await asyncio.to_thread(tempfile.mkdtemp, prefix="orion-restore-", dir=request.work_dir)
        )
        try:
            zip_path = await download_verified(artifact, directory / "tenant.zip", progress)
            row_counts = await restore_tenant(
                request.database_url,
                zip_path,
                tenant_id,
                artifact.row_counts,
                overwrite=request.overwrite,
                allow_added_nullable_columns=request.allow_added_nullable_columns,
                progress=progress,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)
    finished = _now()
    verification = await run_checks(request.database_url, request.checks)
    result = RestoreResult(artifact, database, started, finished, row_counts, verification)
    if not all(each.passed for each in verification):
        raise VerificationFailed(
            f'the restore into database "{database}" committed, but {summary(verification)}',
            result,
        )
    return result


# ---------------------------------------------------------------------------------------------
# The pod side of the job executor


async def execute_restore_run(
    request: RestoreRequest, termination_log: Path, progress: Progress = no_progress
) -> int:
    """One restore in a Job's pod: exit status 0 only when restored and verified.

    The result, or the failure's reason, is printed as one JSON line; a failure's
    `Reason: message` also goes to the termination log, where the operator reads it.
    """
    try:
        result = await run_restore(request, progress)
    except RestoreError as error:
        line = f"{error.reason}: {error.message}"
        write_termination_message(termination_log, line)
        print(
            json.dumps({"outcome": "failed", "reason": error.reason, "message": line}),
            file=sys.stderr,
        )
        return 1
    print(
        json.dumps(
            {
                "outcome": "completed",
                "uri": result.artifact.uri,
                "sha256": result.artifact.sha256,
                "kind": result.artifact.kind,
                "database": result.database,
                "rowCounts": result.row_counts,
                "verification": [each.describe() for each in result.verification],
            }
        )
    )
    return 0
