"""ApiDeployment handlers: the owned Deployment and Service, rollouts, scaling, the health daemon.

The reconcile advances the rollout (`rollout.machine`: gates, verification, rollback), renders
the Deployment and Service (`rollout.render`) with the template the rollout says runs now,
clamps replicas and weighs connections (`rollout.scaling`), applies them with server-side apply
and reports their state. It runs on spec changes (including /scale writes), on every change of
an owned object or of a rollout's Backup or migration Job (so a hand edit is put back at once
and a gate moves on when its object does), after every probe while a rollout is under way (so
verification sees each probe once), and every minute. The health daemon probes /health on its
own interval; probing, triage and alert decisions are in `health/` and `alerts/`.

Both write status through `kube.status.update_status`: each sets its own keys and condition
types, and Ready and phase are derived from the merged result (`rollout.status`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import kopf
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Service
from pydantic import ValidationError

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.alerts.state import AlertPolicy, CheckState
from orion_operator.api.apideployment import (
    ApiDeploymentSpec,
    DatabaseConnectionsStatus,
    HealthStatus,
    QueueStatus,
    TriageStatus,
    parse_duration,
)
from orion_operator.api.common import ConditionStatus
from orion_operator.conditions import utc_now
from orion_operator.health.contract import HealthState
from orion_operator.health.monitor import HealthCycle, TriageOutcome, run_health_cycle
from orion_operator.health.triage import triage_dependencies
from orion_operator.kube.owned import apply_owned, get_or_none
from orion_operator.kube.resources import ApiDeploymentResource, BackupResource
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.kube.status import update_status, with_merge_diffs
from orion_operator.rollout.book import Book, active, target
from orion_operator.rollout.connections import read_connection_usage
from orion_operator.rollout.drift import ForeignItems, foreign_items
from orion_operator.rollout.gates import (
    Action,
    CreateBackup,
    CreateMigrationJob,
    Desired,
    Need,
    Notice,
    Observed,
    ProbeView,
    Step,
    TriageView,
    deployment_view,
)
from orion_operator.rollout.machine import advance
from orion_operator.rollout.observe import (
    check_configuration,
    find_recent_backup,
    read_backup,
    read_migration_job,
)
from orion_operator.rollout.predeploy import (
    APIDEPLOYMENT_LABEL,
    backup_name,
    migration_job_name,
    render_migration_job,
    render_predeploy_backup,
)
from orion_operator.rollout.render import (
    MANAGED_BY_LABEL,
    MANAGER,
    Manifest,
    Owner,
    render_deployment,
    render_pod_template,
    render_service,
    rollout_key,
    selector_string,
    template_image,
)
from orion_operator.rollout.scaling import (
    ConnectionUsage,
    ScaleUpEstimate,
    clamp_replicas,
    estimate_scale_up,
)
from orion_operator.rollout.smoke import api_base_url, run_smoke
from orion_operator.rollout.status import (
    CONNECTION_CAPACITY,
    REPLICAS_CLAMPED,
    ConditionUpdate,
    DeploymentState,
    capacity_condition,
    clamp_condition,
    deployment_conditions,
    healthy_condition,
    invalid_spec_patch,
    rollout_conditions,
    status_patch,
)
from orion_operator.tenancy.errors import TenancyError

APIDEPLOYMENTS = (API_GROUP, API_VERSION, "apideployments")
KIND = "ApiDeployment"
OWNED_BY_US = {MANAGED_BY_LABEL: MANAGER}

# One reconcile at a time per ApiDeployment: spec changes, owned-object events and the timer
# arrive concurrently, and a stale spec must not be applied after a newer one.
_reconcile_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def _lock(namespace: str, name: str) -> asyncio.Lock:
    lock = _reconcile_locks.get((namespace, name))
    if lock is None:
        lock = asyncio.Lock()
        _reconcile_locks[(namespace, name)] = lock
    return lock


def _event_target(namespace: str, name: str, uid: str) -> kopf.Body:
    """The ApiDeployment as Events name it, when the handler's own body is another object."""
    return kopf.Body(
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"namespace": namespace, "name": name, "uid": uid},
        }
    )


def probe_url(spec: ApiDeploymentSpec, name: str, namespace: str) -> str:
    """The owned Service unless healthCheck.url says otherwise."""
    check = spec.health_check
    return check.url or f"http://{name}.{namespace}.svc:{spec.health_port}{check.path}"


async def _secret_or_none(
    memo: kopf.Memo, namespace: str, ref: Any, referrer: str, field: str
) -> tuple[str | None, str | None]:
    """(value, problem): a Secret that cannot be read makes that dependency unknown, not a crash."""
    if ref is None:
        return None, None
    try:
        return await read_secret_key(
            memo.kube, namespace, ref, referrer=referrer, field=field
        ), None
    except SecretUnavailable as error:
        return None, error.message


async def _triage(
    memo: kopf.Memo, namespace: str, name: str, spec: ApiDeploymentSpec
) -> TriageOutcome:
    """The runbook's incident checks with this object's credentials."""
    referrer = f"ApiDeployment {name}"
    dependencies = spec.dependencies
    database_url, database_problem = await _secret_or_none(
        memo,
        namespace,
        dependencies.database.secret_ref,
        referrer,
        "spec.dependencies.database.secretRef",
    )
    redis_url, redis_problem = await _secret_or_none(
        memo, namespace, dependencies.redis, referrer, "spec.dependencies.redis"
    )
    outcome = await triage_dependencies(database_url, redis_url, dependencies.queues)
    notes = [note for note in (database_problem, redis_problem) if note]
    if notes:
        outcome = TriageOutcome(
            f"{outcome.summary}; " + "; ".join(notes), outcome.culprit, outcome.problems
        )
    return outcome


def _health_status(cycle: HealthCycle, url: str) -> dict[str, Any]:
    report = cycle.report
    triage = None
    if cycle.triage is not None:
        triage = TriageStatus(
            summary=cycle.triage.summary, culprit=cycle.triage.culprit, checked_at=utc_now()
        )
    health = HealthStatus(
        state=report.state.value,
        message=report.message,
        checked_at=utc_now(),
        url=url,
        http_status=report.http_status,
        latency_ms=round(cycle.latency_seconds * 1000),
        database=report.database,
        redis=report.redis,
        queues={
            name: QueueStatus(status=q.status, waiting=q.waiting, active=q.active, failed=q.failed)
            for name, q in report.queues.items()
        },
        response_time=report.response_time,
        triage=triage,
    )
    return health.model_dump(mode="json", exclude_none=True)


def _record_metrics(namespace: str, name: str, cycle: HealthCycle) -> None:
    for state in HealthState:
        metrics.probe_state.labels(namespace, name, state.value).set(
            1 if cycle.report.state is state else 0
        )
    metrics.probe_duration_seconds.labels(namespace, name).observe(cycle.latency_seconds)
    services = {"database": cycle.report.database, "redis": cycle.report.redis}
    services |= {f"queue/{q}": health.status for q, health in cycle.report.queues.items()}
    for service, seen in services.items():
        if seen is not None:
            metrics.service_up.labels(namespace, name, service).set(1 if seen == "connected" else 0)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """One probe for the rollout: the classification and, when it ran, the triage."""

    view: ProbeView
    triage: TriageView | None


def _probe_view(cycle: HealthCycle) -> ProbeResult:
    triage = None
    if cycle.triage is not None:
        triage = TriageView(cycle.triage.culprit, cycle.triage.summary)
    return ProbeResult(ProbeView(cycle.report.state, cycle.report.message), triage)


def _post_event(body: kopf.Body, alert: Alert) -> None:
    kind = "Normal" if alert.severity is Severity.INFO else "Warning"
    kopf.event(body, type=kind, reason=alert.reason, message=f"{alert.title}: {alert.message}")


@kopf.daemon(*APIDEPLOYMENTS, cancellation_timeout=10.0)
async def health_probe(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    """Probe on the spec's interval until the object goes away; the body kwarg is live."""
    namespace = namespace or "default"
    subject = ObjectRef("ApiDeployment", namespace, name)
    # The alert state is read from status once; afterwards this loop is its only writer.
    alert_states = {
        check: CheckState.model_validate(raw)
        for check, raw in (body.status.get("alerts") or {}).items()
    }
    next_probe_at = time.monotonic()
    while not stopped:
        metrics.probe_delay_seconds.observe(max(0.0, time.monotonic() - next_probe_at))
        spec = ApiDeploymentSpec.model_validate(body.spec)
        url = probe_url(spec, name, namespace)

        started = time.monotonic()
        cycle: HealthCycle | None = None
        try:
            cycle = await run_health_cycle(
                session=memo.http,
                url=url,
                timeout_seconds=spec.health_check.timeout_seconds,
                queue_failed_threshold=spec.health_check.queue_failed_threshold,
                triage=functools.partial(_triage, memo, namespace, name, spec),
                prior=alert_states,
                policy=AlertPolicy(
                    failure_threshold=spec.health_check.failure_threshold,
                    success_threshold=spec.health_check.success_threshold,
                    repeat_interval=parse_duration(spec.alerts.repeat_interval),
                    recovery_alerts=spec.alerts.recovery,
                ),
                subject=subject,
                subject_uid=uid,
                now=utc_now(),
            )
            for alert in cycle.alerts:
                _post_event(body, alert)
                memo.alert_sender.submit(alert)
            # Sent, so this is the prior state now, even if the status write below fails (API
            # server down): otherwise every probe until it is back would send the alert again.
            previous, alert_states = alert_states, cycle.alert_states
            # Checks gone since the last write that got through are removed too.
            recorded = set(body.status.get("alerts") or {}) | set(previous)
            removed = {check: None for check in recorded if check not in cycle.alert_states}
            health_status = {
                "health": _health_status(cycle, url),
                "alerts": removed
                | {
                    check: state.model_dump(mode="json", exclude_none=True)
                    for check, state in cycle.alert_states.items()
                },
            }
            await update_status(
                memo.kube,
                ApiDeploymentResource,
                name,
                namespace,
                functools.partial(
                    status_patch, health_status, [healthy_condition(cycle.report)], None
                ),
                known={"metadata": dict(body.metadata), "status": dict(body.status)},
            )
            _record_metrics(namespace, name, cycle)
            metrics.reconcile_total.labels("ApiDeployment", "ok").inc()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one failed cycle must not end the probing
            metrics.reconcile_total.labels("ApiDeployment", "error").inc()
            logger.warning("health cycle failed: %s: %s", type(error).__name__, error)
        finally:
            metrics.reconcile_duration_seconds.labels("ApiDeployment").observe(
                time.monotonic() - started
            )
        if cycle is not None and active(Book.from_status(body.status)):
            # A rollout under way sees every probe once (verification), and its deadlines and
            # waits are checked at the probe's pace.
            try:
                await _measured_reconcile(
                    memo,
                    namespace,
                    name,
                    measure_connections=False,
                    logger=logger,
                    probe=_probe_view(cycle),
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the next probe or the timer tries again
                logger.warning("rollout step failed: %s: %s", type(error).__name__, error)
        # Keep to the schedule; after a long stall, start afresh instead of probing in a burst.
        next_probe_at = max(next_probe_at + spec.health_check.interval_seconds, time.monotonic())
        await stopped.wait(next_probe_at - time.monotonic())


# --- the owned Deployment and Service, scaling, connection use -------------------------------


async def _connection_usage(
    memo: kopf.Memo, namespace: str, name: str, spec: ApiDeploymentSpec
) -> ConnectionUsage | ConditionUpdate:
    """The database's connection use, or the `ConnectionCapacity` condition saying why not."""
    try:
        url = await read_secret_key(
            memo.kube,
            namespace,
            spec.dependencies.database.secret_ref,
            referrer=f"ApiDeployment {name}",
            field="spec.dependencies.database.secretRef",
        )
        return await read_connection_usage(
            url, connect_timeout_seconds=memo.settings.database_connect_timeout_seconds
        )
    except (SecretUnavailable, TenancyError) as error:
        return ConditionUpdate(
            CONNECTION_CAPACITY,
            ConditionStatus.UNKNOWN,
            error.reason,
            f"connection use not measured: {error.message}",
        )


async def _weigh_connections(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: ApiDeploymentSpec,
    current_replicas: int,
    target_replicas: int,
) -> tuple[ConnectionUsage | ConditionUpdate, ScaleUpEstimate | None]:
    usage = await _connection_usage(memo, namespace, name, spec)
    if not isinstance(usage, ConnectionUsage):
        return usage, None
    return usage, estimate_scale_up(
        usage,
        current_replicas=current_replicas,
        target_replicas=target_replicas,
        connections_per_replica=spec.database_connections.per_replica,
        max_share=spec.database_connections.max_share,
    )


def _previous_message(status: Mapping[str, Any], type: str) -> str | None:
    found = next((c for c in status.get("conditions") or [] if c.get("type") == type), None)
    return None if found is None else found.get("message")


async def _apply(
    memo: kopf.Memo, manifest: Manifest, live: Any | None, event_target: kopf.Body, logger: Any
) -> dict[str, Any]:
    """Apply one owned object; hand edits it puts back are announced in an Event."""
    foreign = foreign_items(live.to_dict(), manifest) if live is not None else ForeignItems()
    result = await apply_owned(memo.kube, manifest, remove_first=foreign.operations)
    changes = []
    if foreign.described:
        changes.append("removed " + ", ".join(foreign.described))
    if result.conflict:
        changes.append(result.conflict)
    if changes:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        message = f"{kind} {name} was changed by hand; put back: " + "; ".join(changes)
        kopf.event(event_target, type="Normal", reason="DriftCorrected", message=message)
        logger.info("drift corrected kind=%s name=%s", kind, name)
    return result.obj


# --- rollouts ----------------------------------------------------------------------------

# Status keys the rollout owns; nested objects in them are replaced, not merged.
ROLLOUT_KEYS = tuple(Book().status_fields())


def _desired(name: str, uid: str, generation: int, spec: ApiDeploymentSpec) -> Desired:
    template = render_pod_template(name, spec, spec.image)
    within = spec.pre_deploy.require_backup_within
    return Desired(
        key=rollout_key(spec, template),
        uid=uid,
        generation=generation,
        image=spec.image,
        template=template,
        backup_within=parse_duration(within) if within else None,
        backup_name=backup_name(name, generation),
        migrations=spec.pre_deploy.migrations is not None,
        migration_job_name=migration_job_name(name, generation),
        progress_deadline=datetime.timedelta(seconds=spec.rollout.progress_deadline_seconds),
        verify=datetime.timedelta(seconds=spec.rollout.verify_seconds),
        failure_threshold=spec.health_check.failure_threshold,
        smoke=bool(spec.rollout.smoke),
        auto_rollback=spec.rollout.auto_rollback,
        rollback_to=spec.rollback_to,
        history_limit=spec.rollout.history_limit,
    )


async def _observe(
    step: Step,
    seen: Observed,
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: ApiDeploymentSpec,
    desired: Desired,
) -> Observed:
    """Gather the one input the state machine asked for."""
    need, subject = step.need, step.subject
    if need is Need.CONFIGURATION:
        missing = await check_configuration(memo.kube, namespace, spec)
        return dataclasses.replace(seen, missing_configuration=missing)
    if need is Need.RECENT_BACKUP:
        assert desired.backup_within is not None
        recent = await find_recent_backup(
            memo.kube, namespace, spec, desired.backup_within, seen.now
        )
        return dataclasses.replace(seen, recent_backup=recent)
    if need is Need.BACKUP:
        assert subject is not None
        return dataclasses.replace(seen, backup=await read_backup(memo.kube, namespace, subject))
    if need is Need.MIGRATION:
        assert subject is not None
        job = await read_migration_job(memo.kube, namespace, subject)
        return dataclasses.replace(seen, migration=job)
    if need is Need.TRIAGE:
        outcome = await _triage(memo, namespace, name, spec)
        return dataclasses.replace(seen, triage=TriageView(outcome.culprit, outcome.summary))
    smoke = await run_smoke(memo.http, api_base_url(spec, name, namespace), spec.rollout.smoke)
    return dataclasses.replace(seen, smoke=smoke)


async def _advance_rollout(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: ApiDeploymentSpec,
    desired: Desired,
    book: Book,
    live: Manifest | None,
    probe: ProbeResult | None,
) -> Step:
    seen = Observed(
        now=utc_now(),
        deployment=deployment_view(live) if live is not None else None,
        probe=probe.view if probe else None,
        triage=probe.triage if probe else None,
    )
    for _ in range(len(Need) + 1):
        step = advance(desired, book, seen)
        if step.need is None:
            return step
        seen = await _observe(step, seen, memo, namespace, name, spec, desired)
    raise RuntimeError(f"ApiDeployment {namespace}/{name}: the rollout kept asking for input")


def _rollout_alert(namespace: str, name: str, uid: str, notice: Notice) -> Alert:
    assert notice.severity is not None and notice.check is not None
    now = utc_now()
    return Alert(
        # One id per rollout problem: a retried delivery is recognisably the same alert.
        id=str(
            uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"{uid}/{notice.check}/{notice.revision}/{notice.reason}/{notice.message}",
            )
        ),
        check=notice.check,
        reason=notice.reason,
        severity=notice.severity,
        transition=Transition.FIRING,
        title=f"{notice.reason}: ApiDeployment {namespace}/{name}",
        message=notice.message,
        subject=ObjectRef(KIND, namespace, name),
        occurred_at=now,
        details={"revision": str(notice.revision or "")},
    )


async def _create_ignoring_conflict(memo: kopf.Memo, obj: Any, namespace: str) -> None:
    try:
        await memo.kube.create(obj, namespace=namespace)
    except ApiError as error:
        if error.status.code != 409:  # already there: an earlier step made it
            raise


async def _act(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: ApiDeploymentSpec,
    owner: Owner,
    actions: tuple[Action, ...],
    event_target: kopf.Body,
    logger: Any,
) -> None:
    for action in actions:
        if isinstance(action, CreateBackup):
            manifest = render_predeploy_backup(
                action.name, namespace, spec, owner=owner, revision=action.revision
            )
            await _create_ignoring_conflict(memo, BackupResource.from_dict(manifest), namespace)
        elif isinstance(action, CreateMigrationJob):
            manifest = render_migration_job(
                action.name,
                namespace,
                spec,
                owner=owner,
                revision=action.revision,
                template=action.template,
            )
            await _create_ignoring_conflict(memo, Job.from_dict(manifest), namespace)
        else:
            kopf.event(event_target, type=action.type, reason=action.reason, message=action.message)
            logger.info("rollout reason=%s revision=%s", action.reason, action.revision)
            if action.severity is not None:
                memo.alert_sender.submit(_rollout_alert(namespace, name, owner.uid, action))


def _status_change(
    fields: Mapping[str, Any],
    updates: list[ConditionUpdate],
    generation: int | None,
    current: Mapping[str, Any],
) -> dict[str, Any]:
    """`status_patch`, with the rollout's nested objects sent as merge diffs."""
    patch = status_patch(fields, updates, generation, current)
    return with_merge_diffs(patch, current.get("status") or {}, ROLLOUT_KEYS)


# --- the reconcile --------------------------------------------------------------------------


async def reconcile_api_deployment(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    *,
    measure_connections: bool,
    logger: Any,
    probe: ProbeResult | None = None,
) -> None:
    """Level-based: advance the rollout, make the Deployment and Service match it and report;
    safe any time. `probe` is a new /health probe for verification (the daemon's)."""
    async with _lock(namespace, name):
        found = await get_or_none(memo.kube, ApiDeploymentResource, name, namespace)
        if found is None:
            return
        obj = found.to_dict()
        metadata = obj["metadata"]
        if metadata.get("deletionTimestamp"):
            return  # the garbage collector removes the owned objects
        generation = metadata.get("generation")
        event_target = _event_target(namespace, name, metadata["uid"])
        try:
            spec = ApiDeploymentSpec.model_validate(obj.get("spec") or {})
        except ValidationError as error:
            # The schema catches what it can; this is what it could not.
            message = f"ApiDeployment {name}: invalid spec: {error}"
            kopf.event(event_target, type="Warning", reason="InvalidSpec", message=message)
            await update_status(
                memo.kube,
                ApiDeploymentResource,
                name,
                namespace,
                functools.partial(invalid_spec_patch, message, generation),
                known=obj,
            )
            raise kopf.PermanentError(message) from None

        previous_status = obj.get("status") or {}
        target_replicas = clamp_replicas(spec.replicas, spec.min_replicas, spec.max_replicas)
        current = await get_or_none(memo.kube, Deployment, name, namespace)
        live = current.to_dict() if current is not None else None
        current_replicas = (current.spec.replicas or 0) if current is not None else 0
        owner = Owner(f"{API_GROUP}/{API_VERSION}", KIND, name, metadata["uid"])

        # The rollout first: it decides which template the Deployment runs. The Backup or Job
        # a step needs is created before its state is written, and the state before Events
        # and alerts are sent: a restart in between creates again (a conflict: already
        # there, its name is fixed per revision) but never finds a named Job that was never
        # made, and never announces a step twice.
        desired = _desired(name, metadata["uid"], int(generation or 0), spec)
        step = await _advance_rollout(
            memo, namespace, name, spec, desired, Book.from_status(previous_status), live, probe
        )
        creations = tuple(a for a in step.actions if not isinstance(a, Notice))
        notices = tuple(a for a in step.actions if isinstance(a, Notice))
        await _act(memo, namespace, name, spec, owner, creations, event_target, logger)
        rollout_updates = rollout_conditions(step.book.rollout)
        known: Mapping[str, Any] | None = obj
        if step.book != Book.from_status(previous_status):
            await update_status(
                memo.kube,
                ApiDeploymentResource,
                name,
                namespace,
                functools.partial(
                    _status_change,
                    # The book was worked out from this generation's spec: say so with it,
                    # or a reader sees the new rollout's phase beside the old generation.
                    step.book.status_fields() | {"observedGeneration": generation},
                    rollout_updates,
                    generation,
                ),
                known=obj,
            )
            known = None
        await _act(memo, namespace, name, spec, owner, notices, event_target, logger)

        # Weighed before a scale-up is applied, so the warning comes first; the scale-up is
        # not held back (an HPA must keep working), only announced.
        usage: ConnectionUsage | ConditionUpdate | None = None
        estimate: ScaleUpEstimate | None = None
        running = target(step.book)
        if measure_connections or (running and target_replicas.replicas > current_replicas):
            usage, estimate = await _weigh_connections(
                memo, namespace, name, spec, current_replicas, target_replicas.replicas
            )
            if estimate is not None and estimate.over_limit:
                kopf.event(
                    event_target,
                    type="Warning",
                    reason="ConnectionsNearLimit",
                    message=estimate.message,
                )

        live_service = await get_or_none(memo.kube, Service, name, namespace)
        await _apply(
            memo,
            render_service(name, namespace, spec, owner=owner),
            live_service,
            event_target,
            logger,
        )
        deployment: Manifest | None = None
        if running is not None:
            # Until the rollout reaches its Deploy gate, this is the template that ran before.
            template, key = running
            deployment = await _apply(
                memo,
                render_deployment(
                    name,
                    namespace,
                    owner=owner,
                    replicas=target_replicas.replicas,
                    template=template,
                    key=key,
                    progress_deadline_seconds=spec.rollout.progress_deadline_seconds,
                ),
                current,
                event_target,
                logger,
            )

        clamped = clamp_condition(target_replicas)
        if target_replicas.clamped and _previous_message(previous_status, REPLICAS_CLAMPED) != (
            clamped.message
        ):
            kopf.event(
                event_target, type="Warning", reason="ReplicasClamped", message=clamped.message
            )

        updates = [*rollout_updates, clamped]
        fields: dict[str, Any] = {
            "observedGeneration": generation,
            "targetReplicas": target_replicas.replicas,
            "selector": selector_string(name),
        }
        if deployment is not None:
            state = DeploymentState.from_deployment(
                deployment, template_image(deployment["spec"]["template"])
            )
            updates += deployment_conditions(state)
            fields |= {
                "replicas": state.replicas,
                "readyReplicas": state.ready,
                "updatedReplicas": state.updated,
                "availableReplicas": state.available,
                "currentImage": state.image,
            }
        if isinstance(usage, ConnectionUsage):
            updates.append(
                capacity_condition(
                    usage,
                    estimate,
                    replicas=target_replicas.replicas,
                    per_replica=spec.database_connections.per_replica,
                    max_share=spec.database_connections.max_share,
                )
            )
            fields["databaseConnections"] = DatabaseConnectionsStatus(
                in_use=usage.in_use,
                max_connections=usage.max_connections,
                used_percent=usage.used_percent,
                checked_at=utc_now(),
            ).model_dump(mode="json")
        elif isinstance(usage, ConditionUpdate):
            updates.append(usage)

        await update_status(
            memo.kube,
            ApiDeploymentResource,
            name,
            namespace,
            functools.partial(status_patch, fields, updates, generation),
            known=known,
        )


async def _measured_reconcile(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    *,
    measure_connections: bool,
    logger: Any,
    probe: ProbeResult | None = None,
) -> None:
    started = time.monotonic()
    outcome = "error"
    try:
        await reconcile_api_deployment(
            memo,
            namespace,
            name,
            measure_connections=measure_connections,
            logger=logger,
            probe=probe,
        )
        outcome = "ok"
    finally:
        metrics.reconcile_total.labels(KIND, outcome).inc()
        metrics.reconcile_duration_seconds.labels(KIND).observe(time.monotonic() - started)


@kopf.on.resume(*APIDEPLOYMENTS)
@kopf.on.create(*APIDEPLOYMENTS)
@kopf.on.update(*APIDEPLOYMENTS)
async def api_deployment_changed(
    *, name: str, namespace: str | None, memo: kopf.Memo, retry: int, logger: Any, **_: Any
) -> None:
    """Spec changes, `kubectl scale` and HPA writes (through /scale) included."""
    try:
        await _measured_reconcile(
            memo, namespace or "default", name, measure_connections=True, logger=logger
        )
    except kopf.PermanentError:
        raise
    except Exception as error:
        raise kopf.TemporaryError(
            f"{type(error).__name__}: {error}", delay=memo.settings.retry_delay(retry)
        ) from error


# No `idle`: the health daemon writes status every probe, so the object is never idle for long.
@kopf.timer(*APIDEPLOYMENTS, interval=60.0, initial_delay=60.0)
async def api_deployment_resync(
    *, name: str, namespace: str | None, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    """Connection use is measured again, and anything a missed watch event hid is put right."""
    await _measured_reconcile(
        memo, namespace or "default", name, measure_connections=True, logger=logger
    )


def _controller_owner(body: kopf.Body) -> str | None:
    for ref in body.metadata.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == f"{API_GROUP}/{API_VERSION}"
        ):
            return str(ref.get("name"))
    return None


@kopf.on.event("apps/v1", "deployments", labels=OWNED_BY_US)
@kopf.on.event("v1", "services", labels=OWNED_BY_US)
async def owned_object_changed(
    *, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    """A watch on what we own: a hand edit is put back within a moment, not at the next timer.

    Our own applies come back here too; an apply that changes nothing writes nothing, so this
    settles after one round.
    """
    owner = _controller_owner(body)
    if owner is None:
        return
    try:
        await _measured_reconcile(
            memo, namespace or "default", owner, measure_connections=False, logger=logger
        )
    except Exception as error:  # the timer and the next event try again
        logger.warning(
            "reconcile after an owned-object event failed: %s: %s", type(error).__name__, error
        )


@kopf.on.event("batch/v1", "jobs", labels={APIDEPLOYMENT_LABEL: kopf.PRESENT})
@kopf.on.event(API_GROUP, API_VERSION, "backups", labels={APIDEPLOYMENT_LABEL: kopf.PRESENT})
async def rollout_object_changed(
    *, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    """A rollout's migration Job or pre-rollout Backup changed: its gate moves on at once."""
    if body.status.get("phase") == "Running" or not body.status:
        return  # nothing a gate waits for has happened yet
    owner = body.metadata.labels.get(APIDEPLOYMENT_LABEL)
    if not owner:
        return
    try:
        await _measured_reconcile(
            memo, namespace or "default", owner, measure_connections=False, logger=logger
        )
    except Exception as error:  # the probe loop and the timer try again
        logger.warning(
            "reconcile after a rollout object's event failed: %s: %s", type(error).__name__, error
        )
