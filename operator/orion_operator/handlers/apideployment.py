"""ApiDeployment health: a daemon per object probes /health on its interval and reports.

The probing, triage and alert decisions are in `health/` and `alerts/`; this module reads the
spec, posts Events, hands alerts to the dispatcher and writes status.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import kopf

from orion_operator import API_GROUP, API_VERSION, metrics
from orion_operator.alerts.model import Alert, ObjectRef, Severity
from orion_operator.alerts.state import AlertPolicy, CheckState
from orion_operator.api.apideployment import (
    ApiDeploymentSpec,
    HealthPhase,
    HealthStatus,
    QueueStatus,
    TriageStatus,
    parse_duration,
)
from orion_operator.api.common import ConditionStatus
from orion_operator.conditions import READY, set_condition, utc_now
from orion_operator.health.contract import HealthState
from orion_operator.health.monitor import HealthCycle, TriageOutcome, run_health_cycle
from orion_operator.health.triage import triage_dependencies
from orion_operator.kube.resources import ApiDeploymentResource, merge_patch_status
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key

APIDEPLOYMENTS = (API_GROUP, API_VERSION, "apideployments")

PHASES = {
    HealthState.OK: HealthPhase.HEALTHY,
    HealthState.DEGRADED: HealthPhase.DEGRADED,
    HealthState.ERROR: HealthPhase.ERROR,
    HealthState.DOWN: HealthPhase.DOWN,
}


def probe_url(spec: ApiDeploymentSpec, name: str, namespace: str) -> str:
    check = spec.health_check
    return check.url or f"http://{name}.{namespace}.svc:{check.port}{check.path}"


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
    conditions = list(body.status.get("conditions") or [])
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
            healthy = cycle.report.state is HealthState.OK
            conditions = set_condition(
                conditions,
                type=READY,
                status=ConditionStatus.TRUE if healthy else ConditionStatus.FALSE,
                reason=f"Health{cycle.report.state.value.capitalize()}",
                message=cycle.report.message,
                generation=body.metadata.get("generation"),
            )
            removed = {check: None for check in alert_states if check not in cycle.alert_states}
            status = {
                "observedGeneration": body.metadata.get("generation"),
                "phase": PHASES[cycle.report.state].value,
                "conditions": conditions,
                "health": _health_status(cycle, url),
                "alerts": removed
                | {
                    check: state.model_dump(mode="json", exclude_none=True)
                    for check, state in cycle.alert_states.items()
                },
            }
            await merge_patch_status(memo.kube, ApiDeploymentResource, name, namespace, status)
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
