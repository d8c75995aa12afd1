"""The alert state machine: fire after N bad probes, repeat on an interval, resolve once."""

from __future__ import annotations

import datetime

from orion_operator.alerts.model import Severity, Transition
from orion_operator.alerts.state import AlertPolicy, CheckState, Observation, advance

T0 = datetime.datetime(2026, 2, 19, 10, 0, tzinfo=datetime.UTC)
BAD = Observation(True, Severity.CRITICAL, "DatabaseDown", "database disconnected")
GOOD = Observation(False)
POLICY = AlertPolicy(
    failure_threshold=3, success_threshold=2, repeat_interval=datetime.timedelta(hours=4)
)


def run(observations: list[tuple[int, Observation]], state: CheckState | None = None):
    """Feed (minutes after T0, observation) pairs; return the transitions and the last state."""
    state = state or CheckState()
    transitions = []
    for minutes, seen in observations:
        state, transition = advance(state, seen, T0 + datetime.timedelta(minutes=minutes), POLICY)
        transitions.append(transition)
    return transitions, state


def test_one_blip_raises_nothing() -> None:
    transitions, state = run([(0, BAD), (1, GOOD), (2, BAD), (3, BAD), (4, GOOD)])
    assert transitions == [None] * 5
    assert state.firing is False


def test_fires_on_the_third_consecutive_bad_probe_then_resolves_once() -> None:
    transitions, state = run(
        [
            (0, BAD),
            (1, BAD),
            (2, BAD),
            (3, BAD),
            (4, GOOD),
            (5, BAD),
            (6, GOOD),
            (7, GOOD),
            (8, GOOD),
        ]
    )
    assert transitions == [
        None,
        None,
        Transition.FIRING,
        None,
        None,
        None,
        None,
        Transition.RESOLVED,
        None,
    ]
    assert state.firing is False


def test_repeats_only_after_the_repeat_interval() -> None:
    minutes = [0, 1, 2, 60, 239, 242, 300, 482]
    transitions, state = run([(m, BAD) for m in minutes])
    assert transitions == [
        None,
        None,
        Transition.FIRING,
        None,
        None,
        Transition.REPEAT,
        None,
        Transition.REPEAT,
    ]
    assert state.since == T0 + datetime.timedelta(minutes=2)


def test_state_survives_a_round_trip_through_status() -> None:
    _, firing = run([(0, BAD), (1, BAD), (2, BAD)])
    stored = firing.model_dump(mode="json", exclude_none=True)
    assert stored["lastNotifiedAt"].startswith("2026-02-19T10:02")
    restored = CheckState.model_validate(stored)
    # An operator restarted mid-incident still sends the single recovery alert.
    transitions, _ = run([(10, GOOD), (11, GOOD)], state=restored)
    assert transitions == [None, Transition.RESOLVED]


def test_recovery_alerts_can_be_turned_off() -> None:
    quiet = AlertPolicy(failure_threshold=1, success_threshold=1, recovery_alerts=False)
    state, fired = advance(CheckState(), BAD, T0, quiet)
    state, resolved = advance(state, GOOD, T0, quiet)
    assert (fired, resolved, state.firing) == (Transition.FIRING, None, False)
