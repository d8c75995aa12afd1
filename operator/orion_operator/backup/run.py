"""One backup run, start to finish: the same code inline in the operator or in a Job.

Free space first (the runbook's "Backups fallando": fail early, say why), then the dump streamed
through the writer, then the manifest; any failure aborts the writer, so no partial artifact is
ever visible.
"""

from __future__ import annotations

import datetime
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orion_operator.backup.dump import DumpError, dump_platform, dump_tenant
from orion_operator.backup.job import BackupRunArgs, write_termination_message
from orion_operator.backup.storage import (
    Location,
    StorageError,
    StoredArtifact,
    VolumeLocation,
    discard_incomplete,
    free_space,
    open_writer,
)


class BackupError(Exception):
    """A run that cannot go ahead or did not finish; `reason` goes into a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class BackupRequest:
    source: str  # "<namespace>/<name>" of the Backup, recorded in the manifest
    database_url: str
    location: Location
    key: str
    kind: str  # platform | tenant
    format: str = "custom"  # platform only: custom | plain
    tenant_id: str | None = None
    min_free_percent: int = 20
    run_id: str | None = None  # the Backup's uid: ties a manifest to the run that wrote it


@dataclass(frozen=True)
class BackupResult:
    artifact: StoredArtifact
    started_at: datetime.datetime
    finished_at: datetime.datetime
    server_version: str | None
    pg_dump_version: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)  # as committed beside the artifact


def artifact_key(kind: str, namespace: str, name: str, fmt: str, tenant_id: str | None) -> str:
    """Deterministic: re-running the same Backup writes the same key, never a second artifact."""
    if kind == "tenant":
        return f"tenants/{tenant_id}/{namespace}-{name}.zip"
    return f"platform/{namespace}-{name}.{'dump' if fmt == 'custom' else 'sql'}"


async def check_free_space(location: Location, min_free_percent: int) -> None:
    if not isinstance(location, VolumeLocation) or min_free_percent <= 0:
        return
    measured = await free_space(location)
    if measured is None:
        return
    free_bytes, total_bytes = measured
    percent = 100 * free_bytes / total_bytes if total_bytes else 0
    if percent < min_free_percent:
        raise BackupError(
            "InsufficientSpace",
            f"only {percent:.0f}% free on {location.directory} "
            f"({free_bytes // 2**20} MiB), below the {min_free_percent}% threshold",
        )


@dataclass(frozen=True)
class VolumeSpace:
    """Free and total bytes of a backup volume's filesystem, as `df` shows them."""

    free_bytes: int
    total_bytes: int

    @property
    def free_percent(self) -> float:
        return round(100 * self.free_bytes / self.total_bytes, 1) if self.total_bytes else 0.0


async def measure_volume_space(location: Location) -> VolumeSpace | None:
    """The volume's space now; None for S3. Raises StorageError when it cannot be measured."""
    measured = await free_space(location)
    return VolumeSpace(*measured) if measured is not None else None


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat()


async def run_backup(request: BackupRequest) -> BackupResult:
    await check_free_space(request.location, request.min_free_percent)
    started = datetime.datetime.now(datetime.UTC)
    async with open_writer(request.location, request.key) as writer:
        if request.kind == "tenant":
            if not request.tenant_id:
                raise BackupError("InvalidSpec", "a tenant backup needs a tenant id")
            tenant = await dump_tenant(request.database_url, request.tenant_id, writer)
            server_version, pg_dump_version, counts = tenant.server_version, None, tenant.row_counts
        else:
            platform = await dump_platform(request.database_url, writer, fmt=request.format)  # type: ignore[arg-type]
            server_version, pg_dump_version, counts = (
                platform.server_version,
                platform.pg_dump_version,
                {},
            )
        finished = datetime.datetime.now(datetime.UTC)
        manifest = {
            "kind": request.kind,
            "source": request.source,
            "runId": request.run_id,
            "tenant": request.tenant_id,
            "format": request.format if request.kind == "platform" else "zip",
            "pgDumpVersion": pg_dump_version,
            "serverVersion": server_version,
            "rowCounts": counts,
            "startedAt": _stamp(started),
            "finishedAt": _stamp(finished),
        }
        artifact = await writer.commit(manifest)
    committed = {
        **manifest,
        "sha256": artifact.sha256,
        "sizeBytes": artifact.size_bytes,
        "uri": artifact.uri,
    }
    return BackupResult(
        artifact, started, finished, server_version, pg_dump_version, counts, committed
    )


async def execute_backup_run(run: BackupRunArgs, database_url: str, termination_log: Path) -> int:
    """The pod side of the job executor: one run, exit status 0 only with a committed artifact.

    Any partial artifact of an earlier pod of the same Job is discarded first, so a retried pod
    starts clean. The result (or the failure reason) is printed as one JSON line.
    """
    request = BackupRequest(
        source=run.source,
        database_url=database_url,
        location=run.location,
        key=run.key,
        kind=run.kind,
        format=run.format,
        tenant_id=run.tenant_id,
        min_free_percent=run.min_free_percent,
        run_id=run.run_id,
    )
    try:
        await discard_incomplete(run.location, run.key)
        result = await run_backup(request)
    except (BackupError, DumpError, StorageError) as error:
        reason = getattr(error, "reason", "") or "DumpFailed"
        line = f"{reason}: {getattr(error, 'message', str(error))}"
        write_termination_message(termination_log, line)
        print(json.dumps({"outcome": "failed", "reason": reason, "message": line}), file=sys.stderr)
        return 1
    artifact = result.artifact
    print(
        json.dumps(
            {
                "outcome": "completed",
                "uri": artifact.uri,
                "sizeBytes": artifact.size_bytes,
                "sha256": artifact.sha256,
                "manifest": artifact.manifest_uri,
            }
        )
    )
    return 0
