"""When an alert fires, repeats and resolves: a pure state machine per check.

The state lives in the object's status, so an incident that began before an operator restart
still gets its recovery alert afterwards.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from kube_custom_resource import schema
from pydantic import Field

from orion_operator.alerts.model import Severity, Transition


@dataclass(frozen=True)
class AlertPolicy:
    failure_threshold: int = 3
    success_threshold: int = 2
    repeat_interval: datetime.timedelta = datetime.timedelta(hours=4)
    recovery_alerts: bool = True


class CheckState(schema.BaseModel, frozen=True):
    """Consecutive results of one check and whether its alert is firing (kept in status)."""

    failures: int = 0
    successes: int = 0
    firing: bool = False
    severity: schema.Optional[Severity] = None
    reason: schema.Optional[str] = None
    message: schema.Optional[str] = None
    since: schema.Optional[datetime.datetime] = Field(None, description="When it began firing.")
    last_notified_at: schema.Optional[datetime.datetime] = None


@dataclass(frozen=True)
class Observation:
    """One probe's verdict on one check; `bad` with what is wrong, or good."""

    bad: bool
    severity: Severity | None = None
    reason: str | None = None
    message: str | None = None


def _with(state: CheckState, **changes: object) -> CheckState:
    return state.model_copy(update=changes)


def advance(
    state: CheckState, seen: Observation, now: datetime.datetime, policy: AlertPolicy
) -> tuple[CheckState, Transition | None]:
    """The next state, and the notification (if any) this observation calls for."""
    if seen.bad:
        state = _with(
            state,
            failures=state.failures + 1,
            successes=0,
            severity=seen.severity,
            reason=seen.reason,
            message=seen.message,
        )
        if not state.firing:
            if state.failures >= policy.failure_threshold:
                return _with(state, firing=True, since=now, last_notified_at=now), Transition.FIRING
            return state, None
        last = state.last_notified_at
        if last is None or now - last >= policy.repeat_interval:
            return _with(state, last_notified_at=now), Transition.REPEAT
        return state, None

    state = _with(state, successes=state.successes + 1, failures=0)
    if state.firing and state.successes >= policy.success_threshold:
        resolved = _with(state, firing=False, last_notified_at=now)
        return resolved, (Transition.RESOLVED if policy.recovery_alerts else None)
    if not state.firing and state.successes >= policy.success_threshold:
        # Quiet and healthy: forget the last problem so status stays small.
        return CheckState(successes=state.successes), None
    return state, None
