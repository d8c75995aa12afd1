"""ApiDeployment handlers: the owned Deployment and Service, scaling, and the health daemon.

The reconcile renders the Deployment and Service (`rollout.render`), clamps replicas and weighs
connections (`rollout.scaling`), applies them with server-side apply and reports their state.
It runs on spec changes (including /scale writes), on every change of an owned object (so a
hand edit is put back at once) and every minute. The health daemon probes /health on its own
interval; probing, triage and alert decisions are in `health/` and `alerts/`.

Both write status through `kube.status.update_status`: each sets its own keys and condition
types, and Ready and phase are derived from the merged result (`rollout.status`).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Mapping
from typing import Any

import kopf
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from pydantic import ValidationError

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import Alert, ObjectRef, Severity
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
from orion_operator.kube.resources import ApiDeploymentResource
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.kube.status import update_status
from orion_operator.rollout.connections import read_connection_usage
from orion_operator.rollout.drift import ForeignItems, foreign_items
from orion_operator.rollout.render import (
    MANAGED_BY_LABEL,
    MANAGER,
    Manifest,
    Owner,
    render_deployment,
    render_pod_template,
    render_service,
    selector_string,
    template_image,
)
from orion_operator.rollout.scaling import (
    ConnectionUsage,
    ScaleUpEstimate,
    clamp_replicas,
    estimate_scale_up,
)
from orion_operator.rollout.status import (
    CONNECTION_CAPACITY,
    REPLICAS_CLAMPED,
    ConditionUpdate,
    DeploymentState,
    capacity_condition,
    clamp_condition,
    deployment_conditions,
    healthy_condition,
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
            removed = {check: None for check in alert_states if check not in cycle.alert_states}
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
            alert_states = cycle.alert_states
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


async def reconcile_api_deployment(
    memo: kopf.Memo, namespace: str, name: str, *, measure_connections: bool, logger: Any
) -> None:
    """Level-based: make the Deployment and Service match the spec and report; safe any time."""
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
            raise kopf.PermanentError(message) from None

        previous_status = obj.get("status") or {}
        target = clamp_replicas(spec.replicas, spec.min_replicas, spec.max_replicas)
        current = await get_or_none(memo.kube, Deployment, name, namespace)
        current_replicas = (current.spec.replicas or 0) if current is not None else 0
        # Weighed before a scale-up is applied, so the warning comes first; the scale-up is
        # not held back (an HPA must keep working), only announced.
        usage: ConnectionUsage | ConditionUpdate | None = None
        estimate: ScaleUpEstimate | None = None
        if measure_connections or target.replicas > current_replicas:
            usage, estimate = await _weigh_connections(
                memo, namespace, name, spec, current_replicas, target.replicas
            )
            if estimate is not None and estimate.over_limit:
                kopf.event(
                    event_target,
                    type="Warning",
                    reason="ConnectionsNearLimit",
                    message=estimate.message,
                )

        owner = Owner(f"{API_GROUP}/{API_VERSION}", KIND, name, metadata["uid"])
        template = render_pod_template(name, spec, spec.image)
        live_service = await get_or_none(memo.kube, Service, name, namespace)
        applied = [
            await _apply(
                memo,
                render_service(name, namespace, spec, owner=owner),
                live_service,
                event_target,
                logger,
            ),
            await _apply(
                memo,
                render_deployment(
                    name, namespace, owner=owner, replicas=target.replicas, template=template
                ),
                current,
                event_target,
                logger,
            ),
        ]
        deployment = applied[1]

        clamped = clamp_condition(target)
        if target.clamped and _previous_message(previous_status, REPLICAS_CLAMPED) != (
            clamped.message
        ):
            kopf.event(
                event_target, type="Warning", reason="ReplicasClamped", message=clamped.message
            )

        state = DeploymentState.from_deployment(
            deployment, template_image(deployment["spec"]["template"])
        )
        updates = [*deployment_conditions(state), clamped]
        fields: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": state.replicas,
            "targetReplicas": target.replicas,
            "readyReplicas": state.ready,
            "updatedReplicas": state.updated,
            "availableReplicas": state.available,
            "selector": selector_string(name),
            "currentImage": state.image,
        }
        if isinstance(usage, ConnectionUsage):
            updates.append(
                capacity_condition(
                    usage,
                    estimate,
                    replicas=target.replicas,
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
            known=obj,
        )


async def _measured_reconcile(
    memo: kopf.Memo, namespace: str, name: str, *, measure_connections: bool, logger: Any
) -> None:
    started = time.monotonic()
    outcome = "error"
    try:
        await reconcile_api_deployment(
            memo, namespace, name, measure_connections=measure_connections, logger=logger
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
