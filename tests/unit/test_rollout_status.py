"""Conditions and phase from the Deployment's state and the health classification."""

from __future__ import annotations

from typing import Any

from orion_operator.api.apideployment import ApiPhase, RolloutStatus
from orion_operator.api.common import ConditionStatus
from orion_operator.health.contract import HealthReport, HealthState
from orion_operator.rollout.scaling import (
    ConnectionUsage,
    ScaleUpEstimate,
    clamp_replicas,
    estimate_scale_up,
)
from orion_operator.rollout.status import (
    HEALTHY,
    ConditionUpdate,
    DeploymentState,
    apply_updates,
    capacity_condition,
    clamp_condition,
    deployment_conditions,
    derive_phase,
    derive_ready,
    healthy_condition,
    rollout_conditions,
    status_patch,
    with_derived_fields,
)


def _deployment(
    *,
    desired: int = 2,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    available: int = 2,
    generation: int = 1,
    observed: int = 1,
    available_status: str = "True",
    progressing_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": available_status, "reason": "MinimumReplicas"},
                {"type": "Progressing", "status": "True", "reason": progressing_reason},
            ],
        },
    }


def _conditions(deployment: dict[str, Any], health: str | None = None) -> list[dict[str, Any]]:
    updates = deployment_conditions(DeploymentState.from_deployment(deployment, "api:1"))
    if health is not None:
        ok = health == "ok"
        updates.append(
            ConditionUpdate(
                HEALTHY,
                ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
                f"Health{health.capitalize()}",
                f"/health says {health}",
            )
        )
    return apply_updates([], updates, 1)


def _status(conditions: list[dict[str, Any]], type: str) -> str:
    return next(c["status"] for c in conditions if c["type"] == type)


def test_available_and_healthy_is_ready_and_healthy() -> None:
    conditions = _conditions(_deployment(), "ok")
    ready = derive_ready(conditions)
    assert (ready.status, ready.reason) == (ConditionStatus.TRUE, "AvailableAndHealthy")
    assert _status(conditions, "Progressing") == "False"
    assert derive_phase(conditions, "ok") is ApiPhase.HEALTHY


def test_available_but_degraded_is_not_ready_and_says_why() -> None:
    conditions = _conditions(_deployment(), "degraded")
    ready = derive_ready(conditions)
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "HealthDegraded")
    assert derive_phase(conditions, "degraded") is ApiPhase.DEGRADED


def test_not_probed_yet_is_available_but_not_ready() -> None:
    conditions = _conditions(_deployment())
    assert derive_ready(conditions).status is ConditionStatus.UNKNOWN
    assert derive_phase(conditions, None) is ApiPhase.AVAILABLE


def test_old_pods_still_running_is_progressing() -> None:
    conditions = _conditions(_deployment(replicas=3, updated=1), "ok")
    assert _status(conditions, "Progressing") == "True"
    assert derive_phase(conditions, "ok") is ApiPhase.PROGRESSING


def test_a_deployment_spec_not_yet_observed_is_progressing() -> None:
    conditions = _conditions(_deployment(generation=2, observed=1), "ok")
    assert derive_phase(conditions, "ok") is ApiPhase.PROGRESSING


def test_unavailable_deployment_is_not_ready_whatever_the_health() -> None:
    deployment = _deployment(ready=0, available=0, available_status="False")
    deployment["status"]["conditions"][0]["reason"] = "MinimumReplicasUnavailable"
    conditions = _conditions(deployment, "ok")
    ready = derive_ready(conditions)
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "MinimumReplicasUnavailable")
    assert derive_phase(conditions, "ok") is ApiPhase.UNAVAILABLE


def test_new_pods_not_yet_available_during_a_rollout_is_progressing() -> None:
    deployment = _deployment(available=1, progressing_reason="ReplicaSetUpdated")
    conditions = _conditions(deployment, "ok")
    assert derive_phase(conditions, "ok") is ApiPhase.PROGRESSING


def test_deadline_exceeded_is_reported_as_such() -> None:
    deployment = _deployment(updated=1, progressing_reason="ProgressDeadlineExceeded")
    deployment["status"]["conditions"][1]["status"] = "False"
    conditions = _conditions(deployment, "ok")
    progressing = next(c for c in conditions if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_no_deployment_status_yet_is_pending() -> None:
    state = DeploymentState.from_deployment({"metadata": {}, "spec": {"replicas": 2}}, "api:1")
    conditions = apply_updates([], deployment_conditions(state), 1)
    assert derive_phase(conditions, "ok") is ApiPhase.PENDING
    assert derive_ready(conditions).status is ConditionStatus.UNKNOWN


def test_derived_fields_keep_the_other_writers_conditions() -> None:
    """The daemon's Healthy survives a reconcile's write, and the other way round."""
    reconciled = _conditions(_deployment())
    with_health = apply_updates(
        reconciled,
        [ConditionUpdate(HEALTHY, ConditionStatus.TRUE, "HealthOk", "ok")],
        1,
    )
    derived = with_derived_fields({"health": {"state": "ok"}}, with_health, 1)
    types = {c["type"] for c in derived["conditions"]}
    assert types == {"Available", "Progressing", "Healthy", "Ready"}
    assert derived["phase"] == "Healthy"
    again = apply_updates(
        derived["conditions"],
        deployment_conditions(DeploymentState.from_deployment(_deployment(), "api:1")),
        1,
    )
    assert {c["type"] for c in again} == types


def test_a_write_keeps_the_other_writers_keys_and_recomputes_ready_and_phase() -> None:
    """What the reconcile sends when the daemon had already found the API degraded."""
    daemon_wrote = {
        "metadata": {"generation": 3},
        "status": {
            "health": {"state": "degraded"},
            "conditions": apply_updates(
                [],
                [healthy_condition(HealthReport(HealthState.DEGRADED, "redis disconnected"))],
                3,
            ),
        },
    }
    state = DeploymentState.from_deployment(_deployment(), "api:1")
    patch = status_patch({"readyReplicas": 2}, deployment_conditions(state), 3, daemon_wrote)
    assert patch["readyReplicas"] == 2
    assert "health" not in patch  # not this writer's key: left as it is
    healthy = next(c for c in patch["conditions"] if c["type"] == "Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "HealthDegraded")
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HealthDegraded")
    assert patch["phase"] == "Degraded"


def test_clamp_condition_says_what_the_deployment_runs() -> None:
    clamped = clamp_condition(clamp_replicas(12, 1, 10))
    assert (clamped.type, clamped.status, clamped.reason) == (
        "ReplicasClamped",
        ConditionStatus.TRUE,
        "AboveMaxReplicas",
    )
    assert clamp_condition(clamp_replicas(3, 1, 10)).status is ConditionStatus.FALSE


def test_capacity_is_false_when_in_use_the_scale_up_or_the_pools_pass_the_share() -> None:
    quiet = ConnectionUsage(in_use=20, max_connections=100)

    def capacity(
        usage: ConnectionUsage, estimate: ScaleUpEstimate | None = None, replicas: int = 2
    ) -> ConditionUpdate:
        return capacity_condition(usage, estimate, replicas=replicas, per_replica=10, max_share=0.8)

    within = capacity(quiet)
    assert (within.status, within.reason) == (ConditionStatus.TRUE, "WithinMaxShare")
    assert within.message == "20 of 100 PostgreSQL connections in use (20%); the limit is 80 (80%)"

    busy = capacity(ConnectionUsage(in_use=85, max_connections=100))
    assert (busy.status, busy.reason) == (ConditionStatus.FALSE, "AboveMaxShare")

    estimate = estimate_scale_up(
        quiet, current_replicas=2, target_replicas=10, connections_per_replica=10, max_share=0.8
    )
    scaling = capacity(quiet, estimate, replicas=10)
    assert (scaling.status, scaling.reason) == (ConditionStatus.FALSE, "AboveMaxShare")
    assert scaling.message.startswith("scaling from 2 to 10 replicas would use about 100")

    # Once scaled, the pods may not have opened their pools yet: the estimate still counts.
    scaled = capacity(quiet, None, replicas=10)
    assert (scaled.status, scaled.reason) == (ConditionStatus.FALSE, "ReplicasAboveMaxShare")
    assert scaled.message.startswith("10 replicas at 10 connections each may open 100; ")


def _rollout(**fields: Any) -> RolloutStatus:
    base = {
        "revision": 2,
        "key": "k",
        "image": "api:2",
        "gate": "Verify",
        "result": "Running",
        "message": "verifying api:2 for 60s",
        "startedAt": "2026-03-01T12:00:00Z",
        "verify": {"startedAt": "2026-03-01T12:00:10Z"},
        "migrationJob": "api-migrate-g2",
    }
    return RolloutStatus.model_validate({**base, **fields})


def test_gate_conditions_passed_current_and_not_reached() -> None:
    conditions = {
        u.type: (u.status.value, u.reason)
        for u in rollout_conditions(_rollout(gate="Migrations", migrationJob=None, verify=None))
    }
    assert conditions == {
        "ConfigurationPresent": ("True", "ConfigurationFound"),
        "BackupRecent": ("True", "NotRequired"),
        "MigrationsApplied": ("Unknown", "InProgress"),
        "Verified": ("Unknown", "Waiting"),
        "RolledBack": ("False", "NotRolledBack"),
    }


def test_a_rolled_back_rollout_is_not_ready_and_its_phase_says_so() -> None:
    rollout = _rollout(result="RolledBack", reason="VerificationFailed", message="rolled back")
    conditions = {u.type: (u.status.value, u.reason) for u in rollout_conditions(rollout)}
    assert conditions["Verified"] == ("False", "VerificationFailed")
    assert conditions["RolledBack"] == ("True", "VerificationFailed")
    available = apply_updates(
        [], deployment_conditions(DeploymentState.from_deployment(_deployment(), "api:1")), 1
    )
    status = {"rollout": rollout.model_dump(mode="json"), "health": {"state": "ok"}}
    derived = with_derived_fields(status, available, 1)
    assert derived["phase"] == ApiPhase.ROLLED_BACK.value
    assert _status(derived["conditions"], "Ready") == "False"


def test_a_manual_rollback_is_what_the_spec_asks_so_it_can_be_ready() -> None:
    rollout = _rollout(result="RolledBack", reason="ManualRollback", manual=True)
    conditions = _conditions(_deployment(), health="ok")
    assert derive_ready(conditions, rollout.model_dump(mode="json")).status is ConditionStatus.TRUE
    assert derive_phase(conditions, "ok", rollout.model_dump(mode="json")) is ApiPhase.ROLLED_BACK


def test_a_paused_verification_says_a_rollback_would_not_help() -> None:
    rollout = _rollout(
        held="database down: a rollback would not help",
        verify={"startedAt": "2026-03-01T12:00:10Z", "paused": True},
    )
    conditions = {u.type: (u.status.value, u.reason) for u in rollout_conditions(rollout)}
    assert conditions["Verified"] == ("False", "VerificationPaused")
    assert conditions["RolledBack"] == ("False", "RollbackWouldNotHelp")
    assert derive_phase([], None, rollout.model_dump(mode="json")) is ApiPhase.PROGRESSING


def test_a_blocked_rollout_is_blocked() -> None:
    rollout = _rollout(gate="Configuration", result="Blocked", reason="ConfigurationMissing")
    assert derive_phase([], None, rollout.model_dump(mode="json")) is ApiPhase.BLOCKED
    ready = derive_ready([], rollout.model_dump(mode="json"))
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "RolloutBlocked")
