"""Restore handlers: resolve the artifact and the target, run the restore once, record the outcome.

Two executors run the same code (`restore.run.run_restore`): `inline`, inside the operator, and
`job`, a Job running `orion-operator restore-run`; after that Job succeeds the operator runs the
verification queries itself, so the status reports what the database holds. A Restore whose
Backup does not exist yet or has not completed waits (Pending) instead of failing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from orion_operator import API_GROUP, API_VERSION
from orion_operator.alerts.model import Alert, ObjectRef, firing_alert
from orion_operator.api.backup import BackupExecutor
from orion_operator.api.common import ConditionStatus
from orion_operator.api.restore import RestorePhase, RestoreSpec
from orion_operator.backup.job import JobTemplate, job_name, job_outcome
from orion_operator.backup.storage import VolumeLocation
from orion_operator.conditions import Progress, format_time, set_ready, utc_now
from orion_operator.kube.resources import RestoreResource, merge_patch_status
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.restore.artifact import Artifact, load_artifact
from orion_operator.restore.database import database_name
from orion_operator.restore.errors import RestoreError, VerificationFailed, WaitingForBackup
from orion_operator.restore.job import JOB_SUFFIX, RestoreRunArgs, render_restore_job
from orion_operator.restore.run import RestoreRequest, RestoreResult, run_restore
from orion_operator.restore.source import ArtifactSource, backup_source, located_source
from orion_operator.restore.tenant import tenant_row_counts
from orion_operator.restore.verify import Check, CheckResult, run_checks, summary

RESTORES = (API_GROUP, API_VERSION, "restores")
FINISHED = (RestorePhase.COMPLETED.value, RestorePhase.FAILED.value)
RUN_ERRORS = (RestoreError, SecretUnavailable)


def _checks(spec: RestoreSpec) -> tuple[Check, ...]:
    return tuple(
        Check(each.sql, each.expect.min, each.expect.max, each.expect.equals)
        for each in spec.verify
    )


def _parse_time(text: Any) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _failed_alert(namespace: str, name: str, reason: str, message: str) -> Alert:
    return firing_alert(
        ObjectRef("Restore", namespace, name),
        check="restore",
        reason="RestoreFailed",
        message=f"{reason}: {message}",
    )


def _source_status(source: ArtifactSource | None, artifact: Artifact | None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if source is not None:
        status["backup"] = source.backup
    if artifact is not None:
        status.update(
            uri=artifact.uri,
            kind=artifact.kind,
            format=artifact.format,
            tenant=artifact.tenant_id,
            sizeBytes=artifact.size_bytes,
            sha256=artifact.sha256,
        )
    return status


def _verification_status(results: list[CheckResult]) -> list[dict[str, Any]]:
    return [
        {
            "sql": each.sql,
            "expect": each.expect,
            "value": each.value,
            "passed": each.passed,
            "message": each.message,
        }
        for each in results
    ]


@dataclass(frozen=True)
class _Found:
    """What a finished restore leaves for the status: the target and its verification."""

    database: str
    verification: list[CheckResult]
    row_counts: dict[str, int]
    artifact: Artifact | None = None

    @classmethod
    def of(cls, result: RestoreResult) -> _Found:
        return cls(result.database, result.verification, result.row_counts, result.artifact)


class _Outcome:
    """Writes a Restore's final status, Event and alert: one place for both executors."""

    def __init__(self, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
        self.body, self.patch, self.memo = body, patch, memo
        self.name = body.metadata.name
        self.namespace = body.metadata.namespace or "default"
        self.generation = body.metadata.get("generation")
        self.conditions = body.status.get("conditions")
        started = body.status.get("startedAt")
        self.started = _parse_time(started) if started else None

    def _finish(
        self, phase: RestorePhase, ready: ConditionStatus, reason: str, message: str
    ) -> None:
        now = utc_now()
        started = self.started or now
        self.patch.status.update(
            {
                "phase": phase.value,
                "message": message,
                "startedAt": format_time(started),
                "completedAt": format_time(now),
                "durationSeconds": round((now - started).total_seconds(), 3),
                "observedGeneration": self.generation,
                # A one-shot run that failed stays failed: only a new Restore tries again.
                "conditions": set_ready(
                    self.conditions,
                    status=ready,
                    reason=reason,
                    message=message,
                    generation=self.generation,
                    progress=Progress.SETTLED
                    if ready is ConditionStatus.TRUE
                    else Progress.STALLED,
                ),
            }
        )

    def _record(self, found: _Found) -> None:
        # A restore reaches the target only after the artifact hashed to its manifest's sha256.
        source = {**(self.body.status.get("source") or {}), **_source_status(None, found.artifact)}
        self.patch.status.update(
            {
                "source": {**source, "sha256Verified": True},
                "target": {"database": found.database},
                "verification": _verification_status(found.verification),
                "rowCounts": found.row_counts,
            }
        )

    def failed(self, reason: str, message: str, found: _Found | None = None) -> None:
        self._finish(RestorePhase.FAILED, ConditionStatus.FALSE, reason, message)
        if found is not None:
            self._record(found)
        kopf.warn(self.body, reason="RestoreFailed", message=f"{reason}: {message}")
        self.memo.alert_sender.submit(_failed_alert(self.namespace, self.name, reason, message))

    def completed(self, message: str, found: _Found) -> None:
        self._finish(RestorePhase.COMPLETED, ConditionStatus.TRUE, "Completed", message)
        self._record(found)
        kopf.event(self.body, type="Normal", reason="RestoreCompleted", message=message)


async def _mark(
    memo: kopf.Memo,
    body: kopf.Body,
    namespace: str,
    phase: RestorePhase,
    reason: str,
    message: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Written before work starts (Running) or while waiting (Pending), so restarts know."""
    generation = body.metadata.get("generation")
    status = {
        "phase": phase.value,
        "observedGeneration": generation,
        "message": message,
        # Running, or Pending on a Backup that has not completed yet: both end by themselves.
        "conditions": set_ready(
            body.status.get("conditions"),
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            generation=generation,
            progress=Progress.RECONCILING,
        ),
        **extra,
    }
    await merge_patch_status(memo.kube, RestoreResource, body.metadata.name, namespace, status)
    return status


async def _source(memo: kopf.Memo, namespace: str, name: str, spec: RestoreSpec) -> ArtifactSource:
    referrer = f"Restore {name}"
    if spec.backup_ref is not None:
        return await backup_source(memo.kube, namespace, spec.backup_ref.name, referrer=referrer)
    assert spec.location is not None  # the schema requires one of the two
    return await located_source(
        memo.kube, namespace, spec.location, spec.location.key, referrer=referrer
    )


async def _database_url(memo: kopf.Memo, namespace: str, name: str, spec: RestoreSpec) -> str:
    return await read_secret_key(
        memo.kube,
        namespace,
        spec.database.secret_ref,
        referrer=f"Restore {name}",
        field="spec.database.secretRef",
    )


@kopf.on.resume(*RESTORES)
@kopf.on.create(*RESTORES)
async def restore_requested(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: Any,
    **_: Any,
) -> None:
    """Run once: a finished Restore never runs again (its spec cannot change)."""
    namespace = namespace or "default"
    if body.status.get("phase") in FINISHED:
        return
    spec = RestoreSpec.model_validate(body.spec)
    outcome = _Outcome(body, patch, memo)
    if body.status.get("job"):
        await _follow_job(body, name, namespace, memo, spec, outcome)
        return
    try:
        source = await _source(memo, namespace, name, spec)
        artifact = await load_artifact(
            source.location, source.key, expected_sha256=source.expected_sha256
        )
        database_url = await _database_url(memo, namespace, name, spec)
        target = {"database": database_name(database_url)}
    except WaitingForBackup as waiting:
        await _mark(
            memo, body, namespace, RestorePhase.PENDING, waiting.reason, waiting.message, {}
        )
        raise kopf.TemporaryError(waiting.message, delay=memo.settings.retry_delay(retry)) from None
    except RUN_ERRORS as error:
        outcome.failed(error.reason, error.message)
        return
    executor = spec.executor or BackupExecutor(memo.settings.backup_executor)
    extra = {"source": _source_status(source, artifact), "target": target}
    if executor is BackupExecutor.JOB:
        try:
            await _start_job(body, name, namespace, memo, spec, source, extra)
        except RUN_ERRORS as error:
            outcome.failed(error.reason, error.message)
            return
        raise kopf.TemporaryError(
            f"restore Job {job_name(name, JOB_SUFFIX)} started",
            delay=memo.settings.job_poll_seconds,
        )
    attempts = int(body.status.get("attempts") or 0) + 1
    if attempts > 1:
        logger.info("an earlier attempt was interrupted; it committed nothing unless it finished")
    running = await _mark(
        memo,
        body,
        namespace,
        RestorePhase.RUNNING,
        "Running",
        f'restoring into database "{target["database"]}"',
        {
            **extra,
            "attempts": attempts,
            "executor": BackupExecutor.INLINE.value,
            "startedAt": format_time(utc_now()),
        },
    )
    outcome.started = _parse_time(running["startedAt"])
    outcome.conditions = running["conditions"]
    try:
        result = await run_restore(
            RestoreRequest(
                database_url=database_url,
                location=source.location,
                key=source.key,
                overwrite=spec.overwrite,
                expected_sha256=source.expected_sha256,
                checks=_checks(spec),
                allow_added_nullable_columns=spec.allow_added_nullable_columns,
                resumed=attempts > 1,
            )
        )
    except VerificationFailed as failed:
        outcome.failed(failed.reason, failed.message, _Found.of(failed.result))
        return
    except RUN_ERRORS as error:
        outcome.failed(error.reason, error.message)
        return
    outcome.completed(result.message, _Found.of(result))


def _job_template(spec: RestoreSpec, source: ArtifactSource, memo: kopf.Memo) -> JobTemplate:
    return JobTemplate(
        image=memo.settings.image,
        database_secret=(spec.database.secret_ref.name, spec.database.secret_ref.key),
        s3_credentials_secret=source.credentials_secret,
        volume_claim=source.volume_claim,
        backoff_limit=spec.job.backoff_limit,
        active_deadline_seconds=spec.job.active_deadline_seconds,
        resources=spec.job.resources.model_dump(),
        service_account=memo.settings.job_service_account,
        volume_read_only=True,
    )


async def _start_job(
    body: kopf.Body,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    spec: RestoreSpec,
    source: ArtifactSource,
    extra: dict[str, Any],
) -> None:
    if isinstance(source.location, VolumeLocation) and not source.volume_claim:
        raise RestoreError(
            "InvalidSpec",
            "the job executor reads a volume through a PersistentVolumeClaim: the Backup's "
            "spec.storage.volume.claimName (or spec.location.volume.claimName) must be set; or "
            "use S3, or the inline executor",
        )
    run = RestoreRunArgs(
        source=f"{namespace}/{name}",
        key=source.key,
        location=source.location,
        overwrite=spec.overwrite,
        allow_added_nullable_columns=spec.allow_added_nullable_columns,
        expected_sha256=source.expected_sha256,
        checks=_checks(spec),
    )
    manifest = render_restore_job(
        restore_name=name,
        restore_uid=body.metadata.uid,
        namespace=namespace,
        run=run,
        template=_job_template(spec, source, memo),
    )
    # The Job's name is recorded first: a restart then finds this Job, never makes a second.
    await _mark(
        memo,
        body,
        namespace,
        RestorePhase.RUNNING,
        "Running",
        f"the restore Job {manifest['metadata']['name']} is running",
        {
            **extra,
            "attempts": 1,
            "executor": BackupExecutor.JOB.value,
            "job": manifest["metadata"]["name"],
            "startedAt": format_time(utc_now()),
        },
    )
    try:
        await memo.kube.create(Job.from_dict(manifest))
    except ApiError as error:
        if error.status.code != 409:  # already there: an earlier call created it
            raise


async def _follow_job(
    body: kopf.Body,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    spec: RestoreSpec,
    outcome: _Outcome,
) -> None:
    job_ref = body.status["job"]
    try:
        job = (await memo.kube.get(Job, job_ref, namespace=namespace)).to_dict()
    except ApiError as error:
        if error.status.code != 404:
            raise
        outcome.failed("JobMissing", f"the restore Job {job_ref} disappeared")
        return
    pods = [
        pod.to_dict()
        async for pod in memo.kube.list(Pod, namespace=namespace, labels={"job-name": job_ref})
    ]
    state = job_outcome(job, pods, what="restore")
    if state.state == "running":
        raise kopf.TemporaryError(
            f"restore Job {job_ref} is running", delay=memo.settings.job_poll_seconds
        )
    if state.state == "failed":
        outcome.failed(state.reason or "JobFailed", state.message)
        return
    # The Job exits 0 only after the sha256 matched, the restore committed and its own
    # verification passed. The status reports what the operator itself finds in the database.
    source = body.status.get("source") or {}
    try:
        database_url = await _database_url(memo, namespace, name, spec)
        tenant_id = source.get("tenant")
        row_counts = await tenant_row_counts(database_url, tenant_id) if tenant_id else {}
        verification = await run_checks(database_url, _checks(spec))
    except RestoreError as error:
        if error.reason == "DatabaseUnreachable":
            raise kopf.TemporaryError(error.message, delay=memo.settings.job_poll_seconds) from None
        outcome.failed(error.reason, f"the restore Job {job_ref} succeeded, but {error.message}")
        return
    except SecretUnavailable as error:
        outcome.failed(error.reason, f"the restore Job {job_ref} succeeded, but {error.message}")
        return
    found = _Found(database_name(database_url), verification, row_counts)
    what = f'tenant "{tenant_id}"' if tenant_id else f"platform backup ({source.get('format')})"
    restored = (
        f"the restore Job {job_ref} restored {what} from {source.get('uri')} into database "
        f'"{found.database}", sha256 {str(source.get("sha256"))[:12]}… verified'
    )
    if not all(each.passed for each in verification):
        outcome.failed("VerificationFailed", f"{restored}, but {summary(verification)}", found)
        return
    checked = f"; {summary(verification)}" if verification else ""
    outcome.completed(restored + checked, found)
