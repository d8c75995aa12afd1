"""The ApiDeployment's conditions and phase, derived from its Deployment, health and rollout.

Two writers share `status.conditions`: the reconcile (Deployment, scaling, connections, the
rollout's gates) and the health daemon (`Healthy`). Each sets its own condition types; `Ready`
and `phase` are derived from all of them and `status.rollout` by `with_derived_fields`, which
either writer calls on the merged status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orion_operator.api.apideployment import ApiPhase, Gate, RolloutResult, RolloutStatus
from orion_operator.api.common import ConditionStatus
from orion_operator.conditions import READY, Progress, set_condition, set_progress, set_ready
from orion_operator.health.contract import HealthReport, HealthState
from orion_operator.rollout.scaling import ConnectionUsage, ReplicaTarget, ScaleUpEstimate

AVAILABLE = "Available"
PROGRESSING = "Progressing"
HEALTHY = "Healthy"
REPLICAS_CLAMPED = "ReplicasClamped"
CONNECTION_CAPACITY = "ConnectionCapacity"
# The rollout's gates (the Deployment's own rollout is `Progressing`) and its outcome.
CONFIGURATION_PRESENT = "ConfigurationPresent"
BACKUP_RECENT = "BackupRecent"
MIGRATIONS_APPLIED = "MigrationsApplied"
VERIFIED = "Verified"
ROLLED_BACK = "RolledBack"
GATE_CONDITIONS = {
    Gate.CONFIGURATION: CONFIGURATION_PRESENT,
    Gate.BACKUP: BACKUP_RECENT,
    Gate.MIGRATIONS: MIGRATIONS_APPLIED,
    Gate.VERIFY: VERIFIED,
}
GATE_ORDER = list(Gate)

HEALTH_PHASES = {
    "ok": ApiPhase.HEALTHY,
    "degraded": ApiPhase.DEGRADED,
    "error": ApiPhase.ERROR,
    "down": ApiPhase.DOWN,
}


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: ConditionStatus
    reason: str
    message: str


def apply_updates(
    conditions: list[dict[str, Any]] | None,
    updates: Iterable[ConditionUpdate],
    generation: int | None,
) -> list[dict[str, Any]]:
    result = list(conditions or [])
    for update in updates:
        result = set_condition(
            result,
            type=update.type,
            status=update.status,
            reason=update.reason,
            message=update.message,
            generation=generation,
        )
    return result


@dataclass(frozen=True)
class DeploymentState:
    """What the owned Deployment reports, read from the object the API server returned."""

    desired: int
    replicas: int
    ready: int
    updated: int
    available: int
    observed: bool  # the Deployment controller has seen the latest Deployment spec
    image: str | None
    available_condition: Mapping[str, Any] | None
    progressing_condition: Mapping[str, Any] | None

    @classmethod
    def from_deployment(cls, deployment: Mapping[str, Any], image: str | None) -> DeploymentState:
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        generation = (deployment.get("metadata") or {}).get("generation") or 0
        return cls(
            desired=int(spec.get("replicas") or 0),
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            observed=int(status.get("observedGeneration") or 0) >= generation,
            image=image,
            available_condition=conditions.get("Available"),
            progressing_condition=conditions.get("Progressing"),
        )

    @property
    def rolling_out(self) -> bool:
        """The pod template is not yet on every replica, or its new pods are not yet available.

        Pods that stop being ready after a finished rollout (the Deployment says
        NewReplicaSetAvailable) are an availability problem, not a rollout.
        """
        finished = (self.progressing_condition or {}).get("reason") == "NewReplicaSetAvailable"
        return (
            not self.observed
            or self.updated < self.desired
            or self.replicas > self.updated
            or (self.available < self.updated and not finished)
        )


def deployment_conditions(state: DeploymentState) -> list[ConditionUpdate]:
    """`Available` and `Progressing`, in the ApiDeployment's words."""
    counts = f"{state.ready}/{state.desired} replicas ready, {state.available} available"
    if state.available_condition is None:
        available = ConditionUpdate(
            AVAILABLE,
            ConditionStatus.UNKNOWN,
            "DeploymentPending",
            "the Deployment has not reported",
        )
    elif state.available_condition.get("status") == "True":
        available = ConditionUpdate(
            AVAILABLE, ConditionStatus.TRUE, "MinimumReplicasAvailable", counts
        )
    else:
        available = ConditionUpdate(
            AVAILABLE,
            ConditionStatus.FALSE,
            str(state.available_condition.get("reason") or "MinimumReplicasUnavailable"),
            counts,
        )

    progressing_reason = (state.progressing_condition or {}).get("reason")
    if progressing_reason == "ProgressDeadlineExceeded":
        progressing = ConditionUpdate(
            PROGRESSING,
            ConditionStatus.FALSE,
            "ProgressDeadlineExceeded",
            str((state.progressing_condition or {}).get("message") or counts),
        )
    elif state.rolling_out:
        progressing = ConditionUpdate(
            PROGRESSING,
            ConditionStatus.TRUE,
            "RolloutInProgress",
            f"{state.updated}/{state.desired} replicas updated to {state.image}, "
            f"{state.available} available",
        )
    else:
        progressing = ConditionUpdate(
            PROGRESSING,
            ConditionStatus.FALSE,
            "RolloutComplete",
            f"{state.desired} replicas of {state.image} updated and available",
        )
    return [available, progressing]


def _find(conditions: Iterable[Mapping[str, Any]], type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type), None)


def _rollout(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return status.get("rollout") or {}


def derive_ready(
    conditions: list[dict[str, Any]], rollout: Mapping[str, Any] | None = None
) -> ConditionUpdate:
    """Ready when the spec's template is rolled out, available and the health says ok.

    A rollout under way, failed or rolled back automatically is not Ready: the spec asks for
    something that does not run (a manual rollback is what the spec asks for).
    """
    rollout = rollout or {}
    result = rollout.get("result")
    if result in (RolloutResult.RUNNING.value, RolloutResult.BLOCKED.value):
        return ConditionUpdate(
            READY,
            ConditionStatus.FALSE,
            "RolloutInProgress" if result == RolloutResult.RUNNING.value else "RolloutBlocked",
            f"rollout of {rollout.get('image')}, gate {rollout.get('gate')}: "
            f"{rollout.get('message', '')}",
        )
    if result == RolloutResult.FAILED.value or (
        result == RolloutResult.ROLLED_BACK.value and not rollout.get("manual")
    ):
        return ConditionUpdate(
            READY,
            ConditionStatus.FALSE,
            str(rollout.get("reason") or result),
            str(rollout.get("message") or ""),
        )
    available = _find(conditions, AVAILABLE)
    healthy = _find(conditions, HEALTHY)
    if available is None or available.get("status") == ConditionStatus.UNKNOWN.value:
        return ConditionUpdate(
            READY, ConditionStatus.UNKNOWN, "DeploymentPending", "the Deployment has not reported"
        )
    if available.get("status") != ConditionStatus.TRUE.value:
        return ConditionUpdate(
            READY,
            ConditionStatus.FALSE,
            str(available.get("reason") or "Unavailable"),
            f"the Deployment is not available: {available.get('message', '')}",
        )
    if healthy is None:
        return ConditionUpdate(
            READY, ConditionStatus.UNKNOWN, "HealthPending", "/health has not been probed yet"
        )
    if healthy.get("status") != ConditionStatus.TRUE.value:
        return ConditionUpdate(
            READY,
            ConditionStatus.FALSE,
            str(healthy.get("reason") or "Unhealthy"),
            str(healthy.get("message") or ""),
        )
    return ConditionUpdate(
        READY,
        ConditionStatus.TRUE,
        "AvailableAndHealthy",
        f"{available.get('message', '')}; /health ok",
    )


ROLLOUT_PHASES = {
    RolloutResult.RUNNING.value: ApiPhase.PROGRESSING,
    RolloutResult.BLOCKED.value: ApiPhase.BLOCKED,
    RolloutResult.FAILED.value: ApiPhase.FAILED,
    RolloutResult.ROLLED_BACK.value: ApiPhase.ROLLED_BACK,
}


def derive_phase(
    conditions: list[dict[str, Any]],
    health_state: str | None,
    rollout: Mapping[str, Any] | None = None,
) -> ApiPhase:
    """The rollout first, then the Deployment's state (pending, rolling out, unavailable),
    then the health."""
    phase = ROLLOUT_PHASES.get(str((rollout or {}).get("result")))
    if phase is not None:
        return phase
    available = _find(conditions, AVAILABLE)
    progressing = _find(conditions, PROGRESSING)
    if available is None or available.get("status") == ConditionStatus.UNKNOWN.value:
        return ApiPhase.PENDING
    if progressing is not None and progressing.get("status") == ConditionStatus.TRUE.value:
        return ApiPhase.PROGRESSING
    if available.get("status") != ConditionStatus.TRUE.value:
        return ApiPhase.UNAVAILABLE
    return HEALTH_PHASES.get(health_state or "", ApiPhase.AVAILABLE)


# Phases that end by themselves: the Deployment reports, the rollout advances, /health is probed.
RECONCILING_PHASES = (ApiPhase.PENDING, ApiPhase.PROGRESSING, ApiPhase.AVAILABLE)


def derive_progress(
    conditions: list[dict[str, Any]], phase: ApiPhase, rollout: Mapping[str, Any] | None = None
) -> Progress:
    """kstatus' reading: a failed or automatically rolled back rollout, or one past its
    deadline, waits for a new spec (Stalled); a rollout or first probe under way is Reconciling.
    An unhealthy, unavailable or blocked API is neither: Ready False says it."""
    progressing = _find(conditions, PROGRESSING) or {}
    if phase in (ApiPhase.FAILED, ApiPhase.ROLLED_BACK) and not (rollout or {}).get("manual"):
        return Progress.STALLED
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Progress.STALLED
    if phase in RECONCILING_PHASES:
        return Progress.RECONCILING
    return Progress.SETTLED


def with_derived_fields(
    status: Mapping[str, Any], conditions: list[dict[str, Any]], generation: int | None
) -> dict[str, Any]:
    """`conditions` (with Ready, Reconciling and Stalled recomputed) and `phase`, for a status
    patch.

    `status` is the merged status the patch will produce (current plus this writer's changes).
    """
    rollout = _rollout(status)
    ready = derive_ready(conditions, rollout)
    updated = apply_updates(conditions, [ready], generation)
    health_state = (status.get("health") or {}).get("state")
    phase = derive_phase(updated, health_state, rollout)
    updated = set_progress(
        updated,
        derive_progress(updated, phase, rollout),
        reason=ready.reason,
        message=ready.message,
        generation=generation,
    )
    return {"conditions": updated, "phase": phase.value}


def invalid_spec_patch(
    message: str, generation: int | None, current: Mapping[str, Any]
) -> dict[str, Any]:
    """A spec the schema let through but the operator cannot use: nothing is done until it
    changes, so Stalled; the other conditions stay as the last good spec left them."""
    conditions = (current.get("status") or {}).get("conditions")
    return {
        "observedGeneration": generation,
        "phase": ApiPhase.ERROR.value,
        "conditions": set_ready(
            conditions,
            status=ConditionStatus.FALSE,
            reason="InvalidSpec",
            message=message,
            generation=generation,
            progress=Progress.STALLED,
        ),
    }


def status_patch(
    fields: Mapping[str, Any],
    updates: Iterable[ConditionUpdate],
    generation: int | None,
    current: Mapping[str, Any],
) -> dict[str, Any]:
    """One writer's status keys and conditions applied to `current`, Ready and phase derived.

    `generation` is the one the writer worked from; None takes the current object's.
    """
    status = current.get("status") or {}
    if generation is None:
        generation = (current.get("metadata") or {}).get("generation")
    conditions = apply_updates(status.get("conditions"), updates, generation)
    return dict(fields) | with_derived_fields({**status, **fields}, conditions, generation)


def healthy_condition(report: HealthReport) -> ConditionUpdate:
    """The health daemon's classification as the `Healthy` condition."""
    return ConditionUpdate(
        HEALTHY,
        ConditionStatus.TRUE if report.state is HealthState.OK else ConditionStatus.FALSE,
        f"Health{report.state.value.capitalize()}",
        report.message,
    )


def clamp_condition(target: ReplicaTarget) -> ConditionUpdate:
    return ConditionUpdate(
        REPLICAS_CLAMPED,
        ConditionStatus.TRUE if target.clamped else ConditionStatus.FALSE,
        target.reason,
        target.message,
    )


def capacity_condition(
    usage: ConnectionUsage,
    estimate: ScaleUpEstimate | None,
    *,
    replicas: int,
    per_replica: int,
    max_share: float,
) -> ConditionUpdate:
    """False when connections pass the share: in use now, after the scale-up under way, or as
    the replicas' pools add up (so the answer does not flip back once a scale-up is done)."""
    if estimate is not None and estimate.over_limit:
        return ConditionUpdate(
            CONNECTION_CAPACITY, ConditionStatus.FALSE, "AboveMaxShare", estimate.message
        )
    limit = int(max_share * usage.max_connections)
    in_use = (
        f"{usage.in_use} of {usage.max_connections} PostgreSQL connections in use "
        f"({usage.used_percent}%); the limit is {limit} ({max_share:.0%})"
    )
    if usage.in_use > limit:
        return ConditionUpdate(CONNECTION_CAPACITY, ConditionStatus.FALSE, "AboveMaxShare", in_use)
    pools = replicas * per_replica
    if pools > limit:
        return ConditionUpdate(
            CONNECTION_CAPACITY,
            ConditionStatus.FALSE,
            "ReplicasAboveMaxShare",
            f"{replicas} replicas at {per_replica} connections each may open {pools}; {in_use}",
        )
    return ConditionUpdate(CONNECTION_CAPACITY, ConditionStatus.TRUE, "WithinMaxShare", in_use)


def _passed(gate: Gate, rollout: RolloutStatus) -> ConditionUpdate:
    kind = GATE_CONDITIONS[gate]
    true = ConditionStatus.TRUE
    if gate is Gate.CONFIGURATION:
        return ConditionUpdate(
            kind, true, "ConfigurationFound", "every Secret and ConfigMap is there"
        )
    if gate is Gate.BACKUP:
        if rollout.backup is None:
            return ConditionUpdate(
                kind, true, "NotRequired", "spec.preDeploy.requireBackupWithin is unset"
            )
        if rollout.backup_created:
            return ConditionUpdate(
                kind, true, "BackupCompleted", f"Backup {rollout.backup} completed"
            )
        return ConditionUpdate(
            kind, true, "RecentBackupFound", f"Backup {rollout.backup} is recent"
        )
    if gate is Gate.MIGRATIONS:
        if rollout.migration_job is None:
            return ConditionUpdate(
                kind, true, "NotConfigured", "spec.preDeploy.migrations is unset"
            )
        return ConditionUpdate(
            kind, true, "MigrationsSucceeded", f"Job {rollout.migration_job} succeeded"
        )
    if rollout.verify is None:
        return ConditionUpdate(
            kind, true, "NotRequired", "not verified: the first revision, or a manual rollback"
        )
    return ConditionUpdate(kind, true, "VerificationPassed", rollout.message)


def rollout_conditions(rollout: RolloutStatus | None) -> list[ConditionUpdate]:
    """One condition per gate (passed, current or not reached) and `RolledBack`."""
    if rollout is None:
        return []
    updates = []
    current = GATE_ORDER.index(rollout.gate)
    done = rollout.result is RolloutResult.SUCCEEDED or (
        rollout.result is RolloutResult.ROLLED_BACK and rollout.manual
    )
    for gate, kind in GATE_CONDITIONS.items():
        position = GATE_ORDER.index(gate)
        if done or position < current:
            updates.append(_passed(gate, rollout))
        elif position > current:
            reason = "Waiting" if rollout.result.value in ("Running", "Blocked") else "NotReached"
            message = f"after the {rollout.gate.value} gate"
            updates.append(ConditionUpdate(kind, ConditionStatus.UNKNOWN, reason, message))
        elif rollout.result in (RolloutResult.RUNNING,):
            paused = rollout.verify is not None and rollout.verify.paused
            status = ConditionStatus.FALSE if paused else ConditionStatus.UNKNOWN
            reason = "VerificationPaused" if paused else "InProgress"
            updates.append(ConditionUpdate(kind, status, reason, rollout.message))
        else:
            updates.append(
                ConditionUpdate(kind, ConditionStatus.FALSE, rollout.reason, rollout.message)
            )
    if rollout.result is RolloutResult.ROLLED_BACK:
        reason = "ManualRollback" if rollout.manual else rollout.reason or "RolledBack"
        updates.append(ConditionUpdate(ROLLED_BACK, ConditionStatus.TRUE, reason, rollout.message))
    elif rollout.held:
        updates.append(
            ConditionUpdate(
                ROLLED_BACK, ConditionStatus.FALSE, "RollbackWouldNotHelp", rollout.held
            )
        )
    else:
        updates.append(
            ConditionUpdate(
                ROLLED_BACK,
                ConditionStatus.FALSE,
                "NotRolledBack",
                f"revision {rollout.revision} ({rollout.image}): {rollout.result.value}",
            )
        )
    return updates
