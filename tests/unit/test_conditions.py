from __future__ import annotations

import datetime

from orion_operator.api.common import ConditionStatus
from orion_operator.conditions import READY, condition_status, set_condition

T0 = datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_transition_time_moves_only_when_status_flips() -> None:
    first = set_condition(
        None,
        type=READY,
        status=ConditionStatus.FALSE,
        reason="SecretNotFound",
        message="a",
        generation=1,
        now=T0,
    )
    same = set_condition(
        first,
        type=READY,
        status=ConditionStatus.FALSE,
        reason="DatabaseUnreachable",
        message="b",
        generation=2,
        now=T1,
    )
    flipped = set_condition(
        same,
        type=READY,
        status=ConditionStatus.TRUE,
        reason="Synced",
        message="c",
        generation=2,
        now=T1,
    )

    assert first[0]["lastTransitionTime"] == "2026-01-01T10:00:00Z"
    assert same[0]["lastTransitionTime"] == "2026-01-01T10:00:00Z"
    assert same[0]["reason"] == "DatabaseUnreachable"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T10:05:00Z"
    assert condition_status(flipped, READY) == "True"


def test_other_conditions_are_kept() -> None:
    others = [{"type": "Backup", "status": "True", "reason": "Recent", "message": ""}]
    updated = set_condition(
        others,
        type=READY,
        status=ConditionStatus.TRUE,
        reason="Synced",
        message="",
        generation=1,
        now=T0,
    )
    assert [c["type"] for c in updated] == ["Backup", READY]
    assert condition_status(updated, "Missing") is None
