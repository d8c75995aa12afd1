"""Tenant handlers: parse, sync the tenant's row, write status. The work is in `tenancy/`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError
from lightkube.types import CascadeType

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import ObjectRef, Severity
from orion_operator.alerts.state import CheckState
from orion_operator.api.backupschedule import tenant_schedule_spec
from orion_operator.api.common import ConditionStatus
from orion_operator.api.tenant import (
    ProvisioningMode,
    TenantPhase,
    TenantSpec,
)
from orion_operator.backup.schedule import tenant_schedule_name
from orion_operator.conditions import (
    READY,
    Progress,
    condition_status,
    format_time,
    set_ready,
    utc_now,
)
from orion_operator.kube.peering import PeeringState
from orion_operator.kube.resources import BackupScheduleResource, TenantResource
from orion_operator.kube.resync import PeriodicResync
from orion_operator.kube.secrets import SecretUnavailable
from orion_operator.kube.status import update_status
from orion_operator.settings import OperatorSettings
from orion_operator.tenancy.errors import TenancyError
from orion_operator.tenancy.integrity import (
    INTEGRITY_CHECK,
    IntegrityReport,
    database_of,
    integrity_alert_step,
    run_integrity_check,
)
from orion_operator.tenancy.mapping import table_of
from orion_operator.tenancy.rows import TenantRecord, TenantState, TenantTable
from orion_operator.tenancy.sync import sync_tenant

TENANTS = (API_GROUP, API_VERSION, "tenants")
# Any new value asks for an integrity check now (the annotation change triggers a reconcile).
# Not under orion.io/: kopf ignores changes to annotations under its own storage prefix.
INTEGRITY_ANNOTATION = f"integrity.{API_GROUP}/check"
RESYNC_LOGGER = logging.getLogger("orion_operator.tenant.resync")


def effective_provisioning(spec: TenantSpec, settings: OperatorSettings) -> ProvisioningMode:
    return spec.provisioning or settings.tenant_provisioning


def tenant_table(spec: TenantSpec, settings: OperatorSettings) -> TenantTable:
    """spec.tenantTable, or the operator's mapping, as the tenancy code takes it."""
    return table_of(spec.tenant_table or settings.tenant_table)


def _desired_record(spec: TenantSpec, tenant_id: str) -> TenantRecord:
    # The name the application shows; the status value comes from the table mapping.
    return TenantRecord(
        tenant_id=tenant_id,
        name=spec.display_name or tenant_id,
        plan=spec.plan.value,
        state=TenantState.SUSPENDED if spec.suspended else TenantState.ACTIVE,
    )


def _write_ready(
    body: kopf.Body,
    patch: kopf.Patch,
    *,
    ready: ConditionStatus,
    reason: str,
    message: str,
    phase: TenantPhase,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    progress: Progress = Progress.SETTLED,
) -> None:
    generation = body.metadata.get("generation")
    conditions = body.status.get("conditions")
    was = condition_status(conditions, READY)
    patch.status["conditions"] = set_ready(
        conditions,
        status=ready,
        reason=reason,
        message=message,
        generation=generation,
        progress=progress,
    )
    patch.status["observedGeneration"] = generation
    patch.status["phase"] = phase.value
    if was != ready.value:
        if ready is ConditionStatus.TRUE:
            # kopf.info would be dropped: settings.posting.level is WARNING.
            kopf.event(body, type="Normal", reason=reason, message=message)
        else:
            kopf.warn(body, reason=reason, message=message)
        logger.info("tenant ready=%s reason=%s", ready.value, reason)


TENANT_LABEL = f"{API_GROUP}/tenant"


def _tenant_labels(tenant_name: str) -> dict[str, str]:
    # Label values stop at 63 characters; the owner reference still ties a longer name's schedule.
    return {TENANT_LABEL: tenant_name} if len(tenant_name) <= 63 else {}


def _tenant_schedule(body: kopf.Body, spec: TenantSpec, schedule_name: str) -> dict[str, Any]:
    assert spec.backup is not None
    schedule_spec = tenant_schedule_spec(body.metadata.name, spec.backup, spec.database)
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "BackupSchedule",
        "metadata": {
            "name": schedule_name,
            "namespace": body.metadata.namespace or "default",
            "labels": _tenant_labels(body.metadata.name),
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": "Tenant",
                    "name": body.metadata.name,
                    "uid": body.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": schedule_spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


async def sync_backup_schedule(
    body: kopf.Body, spec: TenantSpec, patch: kopf.Patch, memo: kopf.Memo
) -> None:
    """Keep the BackupSchedule of `spec.backup` (server-side apply), or delete it when unset."""
    schedule_name = tenant_schedule_name(body.metadata.name)
    if spec.backup is not None:
        await memo.kube.apply(
            BackupScheduleResource.from_dict(_tenant_schedule(body, spec, schedule_name)),
            field_manager="orion-operator",
            force=True,
        )
        patch.status["backupSchedule"] = schedule_name
        return
    if body.status.get("backupSchedule") is None:
        return
    await delete_schedule_keeping_its_backups(body, memo)
    patch.status["backupSchedule"] = None


async def delete_schedule_keeping_its_backups(body: kopf.Body, memo: kopf.Memo) -> None:
    """Delete the Tenant's own BackupSchedule, orphaning the Backups it took.

    Garbage collection would otherwise cascade to those Backups, whose finalizers delete their
    artifacts: removing the `backup` block, or deleting a Tenant that keeps its data, must not
    throw away the tenant's backups. Orphaned, they keep their artifacts until deleted by name.
    """
    namespace = body.metadata.namespace or "default"
    schedule_name = tenant_schedule_name(body.metadata.name)
    try:
        existing = await memo.kube.get(BackupScheduleResource, schedule_name, namespace=namespace)
        owners = (existing.to_dict().get("metadata") or {}).get("ownerReferences") or []
        if any(owner.get("uid") == body.metadata.uid for owner in owners):
            await memo.kube.delete(
                BackupScheduleResource,
                schedule_name,
                namespace=namespace,
                cascade=CascadeType.ORPHAN,
            )
    except ApiError as error:
        if error.status.code != 404:
            raise


async def reconcile_tenant(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Any
) -> None:
    """Level-based: make the database match the spec and report; safe to call any time."""
    name, namespace = body.metadata.name, body.metadata.namespace or "default"
    try:
        spec = TenantSpec.model_validate(body.spec)
    except ValueError as error:
        message = f"Tenant {name}: invalid spec: {error}"
        _write_ready(
            body,
            patch,
            ready=ConditionStatus.FALSE,
            reason="InvalidSpec",
            message=message,
            phase=TenantPhase.ERROR,
            logger=logger,
            progress=Progress.STALLED,
        )
        raise kopf.PermanentError(message) from None

    tenant_id = spec.tenant_id or name
    patch.status["tenantId"] = tenant_id
    # Before the database: scheduling backups does not need it to be reachable now.
    await sync_backup_schedule(body, spec, patch, memo)
    settings = memo.settings
    provisioning = effective_provisioning(spec, settings)
    table = tenant_table(spec, settings)
    patch.status["provisioning"] = provisioning.value
    try:
        url = await memo.secret_cache.read_key(
            memo.kube,
            namespace,
            spec.database.secret_ref,
            referrer=f"Tenant {name}",
            field="spec.database.secretRef",
        )
        result = await sync_tenant(
            url,
            _desired_record(spec, tenant_id),
            write=provisioning is ProvisioningMode.ENSURE,
            table=table,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            pool=memo.database_pool,
        )
    except (SecretUnavailable, TenancyError) as error:
        _write_ready(
            body,
            patch,
            ready=ConditionStatus.FALSE,
            reason=error.reason,
            message=error.message,
            phase=TenantPhase.ERROR,
            logger=logger,
        )
        raise kopf.TemporaryError(error.message, delay=settings.retry_delay(retry)) from None

    suspended = result.record.state is TenantState.SUSPENDED
    verb = "written to" if result.changed else "in"
    message = f'tenant "{tenant_id}" {verb} the database; ' + ", ".join(
        f"{table}={count}" for table, count in sorted(result.row_counts.items())
    )
    patch.status["rowCounts"] = result.row_counts
    patch.status["lastSyncedAt"] = format_time(utc_now())
    _write_ready(
        body,
        patch,
        ready=ConditionStatus.TRUE,
        reason="Suspended" if suspended else "Synced",
        message=message,
        phase=TenantPhase.SUSPENDED if suspended else TenantPhase.READY,
        logger=logger,
    )
    await _check_integrity(body, patch, memo, url, table, logger)


def _integrity_status(
    report: IntegrityReport, trigger: str | None, checked_at: datetime.datetime
) -> dict[str, Any]:
    return {
        "checkedAt": format_time(checked_at),
        "clean": report.clean,
        "violations": report.violations,
        "nullTenantRows": report.null_tenant_rows,
        "allowedNullTenantRows": report.allowed_null_tenant_rows,
        "orphanRows": report.orphan_rows,
        "trigger": trigger,
        "message": report.summary(),
    }


async def _check_integrity(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    url: str,
    table: TenantTable,
    logger: Any,
) -> None:
    """The runbook's integrity queries; a failure here is reported but leaves Ready alone."""
    settings = memo.settings
    trigger = body.metadata.annotations.get(INTEGRITY_ANNOTATION)
    # A new annotation value asks for a check now, not a recent one's counts.
    on_demand = trigger is not None and trigger != (body.status.get("integrity") or {}).get(
        "trigger"
    )
    checked = await memo.integrity_checks.check(
        url,
        table,
        lambda: run_integrity_check(
            url,
            settings.integrity_allow_list,
            table=table,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            pool=memo.database_pool,
        ),
        fresh=on_demand,
    )
    try:
        report = checked.result()
    except TenancyError as error:
        patch.status["integrity"] = {
            "checkedAt": format_time(checked.checked_at),
            "trigger": trigger,
            "message": f"{error.reason}: {error.message}",
        }
        kopf.warn(body, reason=error.reason, message=error.message)
        return
    patch.status["integrity"] = _integrity_status(report, trigger, checked.checked_at)
    namespace = body.metadata.namespace or "default"
    database = database_of(url)
    prior = CheckState.model_validate((body.status.get("alerts") or {}).get(INTEGRITY_CHECK) or {})
    state, alert = integrity_alert_step(
        prior,
        report,
        subject=ObjectRef("Tenant", namespace, body.metadata.name),
        subject_uid=body.metadata.uid or "",
        now=utc_now(),
        database=database,
    )
    quiet = state == CheckState(successes=state.successes) and not state.firing
    patch.status["alerts"] = {
        INTEGRITY_CHECK: None if quiet else state.model_dump(mode="json", exclude_none=True)
    }
    if alert is not None:
        if alert.severity is Severity.INFO:
            kopf.event(body, type="Normal", reason=alert.reason, message=alert.message)
        else:
            kopf.warn(body, reason=alert.reason, message=alert.message)
        # Every Tenant on the database saw the same rows: the channels hear it once.
        sent = memo.integrity_alerts.admits(database, alert)
        if sent:
            memo.alert_sender.submit(alert)
        logger.info(
            "integrity alert=%s violations=%d %s",
            alert.reason,
            report.violations,
            "sent" if sent else "already sent for this database",
        )


async def _measured_reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Any
) -> None:
    started = time.monotonic()
    outcome = "error"
    try:
        await reconcile_tenant(body, patch, memo, retry, logger)
        outcome = "ok"
    finally:
        metrics.reconcile_total.labels("Tenant", outcome).inc()
        metrics.reconcile_duration_seconds.labels("Tenant").observe(time.monotonic() - started)


@kopf.on.resume(*TENANTS)
@kopf.on.create(*TENANTS)
@kopf.on.update(*TENANTS)
async def tenant_changed(
    *, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Any, **_: Any
) -> None:
    memo.tenant_resync.touch((body.metadata.namespace or "default", body.metadata.name))
    await _measured_reconcile(body, patch, memo, retry, logger)


async def _resync(memo: kopf.Memo, key: tuple[str, str]) -> bool:
    """One Tenant's periodic reconcile, outside kopf; False when the Tenant is gone."""
    namespace, name = key
    if await memo.peering.paused(namespace):
        return True  # a peer reconciles now; kopf has paused our handlers too
    try:
        raw = (await memo.kube.get(TenantResource, name, namespace=namespace)).to_dict()
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    if raw["metadata"].get("deletionTimestamp"):
        return False  # the deletion handlers own it now
    body, patch = kopf.Body(raw), kopf.Patch()
    logger = logging.LoggerAdapter(RESYNC_LOGGER, {"tenant": f"{namespace}/{name}"})
    try:
        await _measured_reconcile(body, patch, memo, 0, logger)
    except (kopf.TemporaryError, kopf.PermanentError) as error:
        # As kopf would: the status below says why; the next resync tries again.
        logger.warning("resync of Tenant %s/%s: %s", namespace, name, error)
    finally:
        # kopf applies a handler's patch whatever the outcome; so does the resync.
        if patch.status:
            await update_status(
                memo.kube,
                TenantResource,
                name,
                namespace,
                lambda _current: dict(patch.status),
                known=raw,
            )
    return True


@kopf.on.startup()
async def start_tenant_resync(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Row counts and drift (a row edited by hand) are picked up without a spec change.

    One loop for all Tenants instead of a kopf timer per Tenant: see kube/resync.py. Runs after
    lifecycle.configure (imported first), which sets the peering settings and memo.settings.
    """
    ours: OperatorSettings = memo.settings
    memo.peering = PeeringState(
        memo.kube,
        settings.peering.name,
        settings.peering.priority,
        standalone=settings.peering.standalone,
        clusterwide=settings.peering.clusterwide,
    )
    memo.tenant_resync = PeriodicResync[tuple[str, str]](
        ours.tenant_resync_seconds, ours.tenant_resync_workers
    )
    memo.tenant_resync_task = asyncio.create_task(
        memo.tenant_resync.run(lambda key: _resync(memo, key))
    )


@kopf.on.cleanup()
async def stop_tenant_resync(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "tenant_resync_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
