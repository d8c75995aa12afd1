"""Backup handlers: resolve credentials and destination, run the backup, record the outcome.

Two executors run the same code (`backup.run.run_backup`): `inline`, inside the operator, and
`job`, a batch/v1 Job running `orion-operator backup-run` whose result the operator reads back
from the manifest the run commits. A finalizer removes the artifact when the effective
deletionPolicy is Delete.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import Alert, ObjectRef, firing_alert
from orion_operator.api.backup import (
    SCHEDULE_LABEL,
    BackupDeletionPolicy,
    BackupExecutor,
    BackupPhase,
    BackupSpec,
    BackupType,
)
from orion_operator.api.common import ConditionStatus
from orion_operator.backup.dump import DumpError
from orion_operator.backup.job import (
    BackupRunArgs,
    JobTemplate,
    job_name,
    job_outcome,
    render_backup_job,
)
from orion_operator.backup.run import (
    BackupError,
    BackupRequest,
    artifact_key,
    measure_volume_space,
    run_backup,
)
from orion_operator.backup.storage import (
    MANIFEST_SUFFIX,
    Location,
    StorageError,
    delete_artifact,
    discard_incomplete,
    read_manifest,
)
from orion_operator.conditions import Progress, format_time, set_ready, utc_now
from orion_operator.kube.resources import BackupResource, TenantResource, merge_patch_status
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.kube.storage import resolve_storage

BACKUPS = (API_GROUP, API_VERSION, "backups")
FINISHED = (BackupPhase.COMPLETED.value, BackupPhase.FAILED.value)
RUN_ERRORS = (BackupError, DumpError, StorageError, SecretUnavailable)
# Removing a failed run's partial artifact is retried this often before a Warning.
CLEANUP_RETRIES = 8
# Deleting an artifact is retried this often before the Backup is let go with a Warning.
ARTIFACT_DELETE_RETRIES = 5


async def _location(
    memo: kopf.Memo, namespace: str, name: str, spec: BackupSpec, *, credentials: bool = True
) -> Location:
    return await resolve_storage(
        memo.kube,
        namespace,
        spec.storage,
        referrer=f"Backup {name}",
        field="spec.storage.s3.credentialsSecret",
        credentials=credentials,
    )


async def _tenant_id(memo: kopf.Memo, namespace: str, spec: BackupSpec) -> str | None:
    if spec.type is not BackupType.TENANT or spec.tenant_ref is None:
        return None
    try:
        tenant = await memo.kube.get(TenantResource, spec.tenant_ref.name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            raise BackupError(
                "TenantNotFound",
                f'Tenant "{spec.tenant_ref.name}" not found in namespace "{namespace}" '
                "(spec.tenantRef)",
            ) from None
        raise
    return str((tenant.get("spec") or {}).get("tenantId") or spec.tenant_ref.name)


def _failed_alert(namespace: str, name: str, reason: str, message: str) -> Alert:
    return firing_alert(
        ObjectRef("Backup", namespace, name),
        check="backup",
        reason="BackupFailed",
        message=f"{reason}: {message}",
    )


def _parse_time(text: Any) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _effective_executor(spec: BackupSpec, memo: kopf.Memo) -> BackupExecutor:
    return spec.executor or BackupExecutor(memo.settings.backup_executor)


def deletes_artifact(spec: kopf.Spec, labels: kopf.Labels, **_: Any) -> bool:
    """The effective deletionPolicy: Delete when set so, or unset on a scheduled Backup."""
    policy = spec.get("deletionPolicy")
    if policy is None:
        policy = BackupDeletionPolicy.DELETE if SCHEDULE_LABEL in labels else None
    return policy == BackupDeletionPolicy.DELETE


class _Outcome:
    """Writes a Backup's final status, Events, metrics and alert: one place for both executors."""

    def __init__(
        self, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, spec: BackupSpec
    ) -> None:
        self.body, self.patch, self.memo, self.spec = body, patch, memo, spec
        self.name = body.metadata.name
        self.namespace = body.metadata.namespace or "default"
        self.schedule = body.metadata.labels.get(SCHEDULE_LABEL, "")
        self.generation = body.metadata.get("generation")
        self.conditions = body.status.get("conditions")
        self.started = (
            _parse_time(body.status["startedAt"]) if body.status.get("startedAt") else None
        )

    def failed(self, reason: str, message: str) -> None:
        now = utc_now()
        started = self.started or now
        self.patch.status.update(
            {
                "phase": BackupPhase.FAILED.value,
                "message": message,
                "completedAt": format_time(now),
                "durationSeconds": round((now - started).total_seconds(), 3),
                "observedGeneration": self.generation,
                # A one-shot run that failed stays failed: only a new Backup tries again.
                "conditions": set_ready(
                    self.conditions,
                    status=ConditionStatus.FALSE,
                    reason=reason,
                    message=message,
                    generation=self.generation,
                    progress=Progress.STALLED,
                ),
            }
        )
        metrics.backups_failed_total.labels(
            self.namespace, self.spec.type.value, self.schedule
        ).inc()
        kopf.warn(self.body, reason="BackupFailed", message=f"{reason}: {message}")
        self.memo.alert_sender.submit(_failed_alert(self.namespace, self.name, reason, message))

    def completed(self, manifest: dict[str, Any]) -> None:
        """Record a run from its committed manifest (inline and Job runs alike)."""
        started = _parse_time(manifest["startedAt"])
        finished = _parse_time(manifest["finishedAt"])
        size, sha256, uri = int(manifest["sizeBytes"]), str(manifest["sha256"]), manifest["uri"]
        message = f"{size} bytes, sha256 {sha256[:12]}…, at {uri}"
        self.patch.status.update(
            {
                "phase": BackupPhase.COMPLETED.value,
                "startedAt": format_time(started),
                "completedAt": format_time(finished),
                "durationSeconds": round((finished - started).total_seconds(), 3),
                "sizeBytes": size,
                "sha256": sha256,
                "location": uri,
                "manifest": uri + MANIFEST_SUFFIX,
                "pgDumpVersion": manifest.get("pgDumpVersion"),
                "serverVersion": manifest.get("serverVersion"),
                "rowCounts": manifest.get("rowCounts") or {},
                "message": message,
                "observedGeneration": self.generation,
                "conditions": set_ready(
                    self.conditions,
                    status=ConditionStatus.TRUE,
                    reason="Completed",
                    message=message,
                    generation=self.generation,
                ),
            }
        )
        _observe_success(
            (self.namespace, self.spec.type.value, self.schedule),
            finished,
            finished - started,
            size,
        )
        kopf.event(self.body, type="Normal", reason="BackupCompleted", message=message)


def _observe_success(
    labels: tuple[str, str, str],
    finished: datetime.datetime,
    duration: datetime.timedelta,
    size_bytes: int,
) -> None:
    metrics.backup_last_success_timestamp_seconds.labels(*labels).set(finished.timestamp())
    metrics.backup_duration_seconds.labels(*labels).observe(duration.total_seconds())
    metrics.backup_size_bytes.labels(*labels).set(size_bytes)


async def _record_volume_space(location: Location | None, patch: kopf.Patch, logger: Any) -> None:
    """Free space after a run, for `kubectl orion status`; failing to measure only logs."""
    if location is None:
        return
    try:
        space = await measure_volume_space(location)
    except StorageError as error:
        logger.warning(f"cannot measure the backup volume's free space: {error}")
        return
    if space is not None:
        patch.status["volumeSpace"] = {
            "freeBytes": space.free_bytes,
            "totalBytes": space.total_bytes,
            "freePercent": space.free_percent,
            "measuredAt": format_time(utc_now()),
        }


async def _mark_running(
    memo: kopf.Memo, body: kopf.Body, namespace: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Recorded before any work starts, so a restart knows a run was under way."""
    generation = body.metadata.get("generation")
    status = {
        "phase": BackupPhase.RUNNING.value,
        "startedAt": format_time(utc_now()),
        "observedGeneration": generation,
        "conditions": set_ready(
            body.status.get("conditions"),
            status=ConditionStatus.FALSE,
            reason="Running",
            message="the backup is running",
            generation=generation,
            progress=Progress.RECONCILING,
        ),
        **extra,
    }
    await merge_patch_status(memo.kube, BackupResource, body.metadata.name, namespace, status)
    return status


@kopf.on.resume(*BACKUPS)
@kopf.on.create(*BACKUPS)
async def backup_requested(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    """Run once: a finished Backup is never run again; an interrupted inline run starts over."""
    namespace = namespace or "default"
    spec = BackupSpec.model_validate(body.spec)
    if body.status.get("phase") in FINISHED:
        if body.status.get("cleanupPending"):
            location = await _location(memo, namespace, name, spec)
            await _clean_up(body, location, body.status["artifactKey"], patch, memo)
        return
    if body.status.get("job") or _effective_executor(spec, memo) is BackupExecutor.JOB:
        await _run_as_job(body, name, namespace, patch, memo, spec, logger)
    else:
        await _run_inline(body, name, namespace, patch, memo, spec, logger)


async def _clean_up(
    body: kopf.Body, location: Location, key: str, patch: kopf.Patch, memo: kopf.Memo
) -> None:
    """After a failed run: no half-written file and no open multipart upload may stay behind.

    The writer aborts on failure, but an abort can fail too (S3 unreachable): then the cleanup
    is retried with backoff, without running or alerting again, and given up with a Warning
    after CLEANUP_RETRIES (a bucket lifecycle rule for incomplete uploads is the backstop).
    `status.cleanupPending` counts the failed attempts.
    """
    failures = int(body.status.get("cleanupPending") or 0)
    try:
        await discard_incomplete(location, key)
    except StorageError as error:
        if failures < CLEANUP_RETRIES:
            patch.status["cleanupPending"] = failures + 1
            raise kopf.TemporaryError(
                f"cannot remove the failed run's partial artifact yet: {error}",
                delay=memo.settings.retry_delay(failures),
            ) from error
        kopf.warn(
            body,
            reason="PartialArtifactLeft",
            message=f"{error}; the failed run's partial artifact at {key!r} was not removed",
        )
    patch.status["cleanupPending"] = None


async def _run_inline(
    body: kopf.Body,
    name: str,
    namespace: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    spec: BackupSpec,
    logger: Any,
) -> None:
    attempts = int(body.status.get("attempts") or 0) + 1
    running = await _mark_running(
        memo, body, namespace, {"attempts": attempts, "executor": BackupExecutor.INLINE.value}
    )
    outcome = _Outcome(body, patch, memo, spec)
    outcome.started = _parse_time(running["startedAt"])
    outcome.conditions = running["conditions"]
    location: Location | None = None
    key: str | None = None
    try:
        location = await _location(memo, namespace, name, spec)
        tenant_id = await _tenant_id(memo, namespace, spec)
        key = artifact_key(spec.type.value, namespace, name, spec.format.value, tenant_id)
        patch.status["artifactKey"] = key
        # An earlier attempt may have committed its artifact without its result being recorded
        # (operator killed, API server away): record that run; a new one would replace it, with
        # the data as it is now (a final tenant backup taken after its rows were deleted).
        committed = await read_manifest(location, key)
        if committed is not None and committed.get("runId") == body.metadata.uid:
            logger.info("an earlier attempt committed its artifact; recording it, not a new run")
            outcome.completed(committed)
            await _record_volume_space(location, patch, logger)
            return
        if attempts > 1:
            logger.info("an earlier attempt was interrupted; discarding its partial artifact")
            await discard_incomplete(location, key)
        database_url = await read_secret_key(
            memo.kube,
            namespace,
            spec.database.secret_ref,
            referrer=f"Backup {name}",
            field="spec.database.secretRef",
        )
        volume = spec.storage.volume
        result = await run_backup(
            BackupRequest(
                source=f"{namespace}/{name}",
                database_url=database_url,
                location=location,
                key=key,
                kind=spec.type.value,
                format=spec.format.value,
                tenant_id=tenant_id,
                min_free_percent=volume.min_free_percent if volume else 20,
                run_id=body.metadata.uid,
            )
        )
    except RUN_ERRORS as error:
        outcome.failed(_reason(error), getattr(error, "message", str(error)))
        if location is not None and key is not None:
            await _clean_up(body, location, key, patch, memo)
        await _record_volume_space(location, patch, logger)
        return
    outcome.completed(result.manifest)
    await _record_volume_space(location, patch, logger)


def _reason(error: Exception) -> str:
    return getattr(error, "reason", type(error).__name__.removesuffix("Error") + "Failed")


def _job_template(spec: BackupSpec, memo: kopf.Memo) -> JobTemplate:
    volume, s3 = spec.storage.volume, spec.storage.s3
    return JobTemplate(
        image=memo.settings.image,
        database_secret=(spec.database.secret_ref.name, spec.database.secret_ref.key),
        s3_credentials_secret=s3.credentials_secret if s3 else None,
        volume_claim=volume.claim_name if volume else None,
        backoff_limit=spec.job.backoff_limit,
        active_deadline_seconds=spec.job.active_deadline_seconds,
        resources=spec.job.resources.model_dump(),
        service_account=memo.settings.job_service_account,
    )


async def _start_job(
    body: kopf.Body, name: str, namespace: str, memo: kopf.Memo, spec: BackupSpec
) -> None:
    tenant_id = await _tenant_id(memo, namespace, spec)
    if spec.storage.s3 is None and not (spec.storage.volume and spec.storage.volume.claim_name):
        raise BackupError(
            "InvalidSpec",
            "the job executor writes to a volume through a PersistentVolumeClaim: "
            "set spec.storage.volume.claimName (or use S3, or the inline executor)",
        )
    key = artifact_key(spec.type.value, namespace, name, spec.format.value, tenant_id)
    volume = spec.storage.volume
    run = BackupRunArgs(
        source=f"{namespace}/{name}",
        run_id=body.metadata.uid,
        kind=spec.type.value,
        format=spec.format.value,
        key=key,
        tenant_id=tenant_id,
        min_free_percent=volume.min_free_percent if volume else 20,
        location=await _location(memo, namespace, name, spec, credentials=False),
    )
    manifest = render_backup_job(
        backup_name=name,
        backup_uid=body.metadata.uid,
        namespace=namespace,
        run=run,
        template=_job_template(spec, memo),
    )
    # The Job's name is recorded first: a restart then finds this Job, never makes a second.
    await _mark_running(
        memo,
        body,
        namespace,
        {
            "attempts": 1,
            "executor": BackupExecutor.JOB.value,
            "job": manifest["metadata"]["name"],
            "artifactKey": key,
        },
    )
    try:
        await memo.kube.create(Job.from_dict(manifest))
    except ApiError as error:
        if error.status.code != 409:  # already there: an earlier call created it
            raise


async def _run_as_job(
    body: kopf.Body,
    name: str,
    namespace: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    spec: BackupSpec,
    logger: Any,
) -> None:
    outcome = _Outcome(body, patch, memo, spec)
    if not body.status.get("job"):
        try:
            await _start_job(body, name, namespace, memo, spec)
        except RUN_ERRORS as error:
            outcome.failed(_reason(error), getattr(error, "message", str(error)))
            return
        raise kopf.TemporaryError(
            f"backup Job {job_name(name)} started", delay=memo.settings.job_poll_seconds
        )

    job_ref, key = body.status["job"], body.status.get("artifactKey") or ""
    try:
        job = (await memo.kube.get(Job, job_ref, namespace=namespace)).to_dict()
    except ApiError as error:
        if error.status.code != 404:
            raise
        job = None
    if job is None:
        state, reason, message = "gone", "JobMissing", f"the backup Job {job_ref} disappeared"
    else:
        pods = [
            pod.to_dict()
            async for pod in memo.kube.list(Pod, namespace=namespace, labels={"job-name": job_ref})
        ]
        result = job_outcome(job, pods)
        state, reason, message = result.state, result.reason, result.message
    if state == "running":
        raise kopf.TemporaryError(
            f"backup Job {job_ref} is running", delay=memo.settings.job_poll_seconds
        )

    location: Location | None = None
    try:
        location = await _location(memo, namespace, name, spec)
        manifest = await read_manifest(location, key) if key else None
        finished_here = manifest is not None and manifest.get("runId") == body.metadata.uid
        if state in ("succeeded", "gone") and finished_here:
            outcome.completed(manifest)  # type: ignore[arg-type]  # finished_here: not None
            await _record_volume_space(location, patch, logger)
            return
        if state == "succeeded":
            reason = "ArtifactMissing"
            message = (
                f"the backup Job {job_ref} succeeded but no manifest of this run is at "
                f"{key!r} in the storage; is the volume mounted at the same path in the "
                "operator and the Job?"
            )
    except RUN_ERRORS as error:
        message = f"{message}; the storage could not be checked: {error}"
    outcome.failed(reason or "JobFailed", message)
    if location is not None and key:
        logger.info("the Job did not commit an artifact; removing anything it left half-written")
        await _clean_up(body, location, key, patch, memo)
    await _record_volume_space(location, patch, logger)


@kopf.on.delete(*BACKUPS, when=deletes_artifact)
async def backup_deleted(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    retry: int,
    logger: Any,
    **_: Any,
) -> None:
    """deletionPolicy Delete: the artifact, its manifest and any half-written rest go too."""
    namespace = namespace or "default"
    key = body.status.get("artifactKey")
    if not key:
        return  # never started: nothing was written
    spec = BackupSpec.model_validate(body.spec)
    try:
        try:
            location = await _location(memo, namespace, name, spec)
        except SecretUnavailable as error:
            # A namespace being deleted loses its Secrets first: try the operator's own keys.
            logger.warning(f"{error}; deleting the artifact with the operator's own credentials")
            location = await _location(memo, namespace, name, spec, credentials=False)
        await discard_incomplete(location, key)
        await delete_artifact(location, key)
    except StorageError as error:
        if retry < ARTIFACT_DELETE_RETRIES:
            raise kopf.TemporaryError(
                f"cannot delete the artifact yet: {error}", delay=memo.settings.retry_delay(retry)
            ) from error
        kopf.warn(
            body,
            reason="ArtifactNotDeleted",
            message=f"{error}; the Backup is deleted, the artifact at {key!r} is left behind",
        )
        return
    logger.info(f"deleted the artifact {key} and its manifest (deletionPolicy Delete)")
