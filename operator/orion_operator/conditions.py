"""The one place that writes `status.conditions`: named types, stable transition times.

Besides `Ready`, every kind carries the two conditions kstatus (and so Flux, `kubectl wait`
users and Argo CD's health checks) reads to tell "not yet" from "never": `Reconciling` True
while work is under way that ends by itself, `Stalled` True when nothing more happens until
someone changes something. Both follow the abnormal-true convention: present only while True.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from orion_operator.api.common import ConditionStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Progress(StrEnum):
    """Whether an object's state can still change without anyone touching it."""

    SETTLED = "Settled"  # nothing under way: Ready tells how it ended or stands
    RECONCILING = RECONCILING  # work under way (a run, a rollout, a wait) that ends by itself
    STALLED = STALLED  # bad input or a failed terminal state: needs a change to go on


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """Return a new list with `type` set; lastTransitionTime moves only when the status flips."""
    previous = next((c for c in conditions or [] if c.get("type") == type), None)
    if previous is not None and previous.get("status") == status.value:
        transition = previous.get("lastTransitionTime") or format_time(now or utc_now())
    else:
        transition = format_time(now or utc_now())
    updated = {
        "type": type,
        "status": status.value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    others = [c for c in conditions or [] if c.get("type") != type]
    return sorted([*others, updated], key=lambda c: str(c.get("type")))


def condition_status(conditions: list[dict[str, Any]] | None, type: str) -> str | None:
    found = next((c for c in conditions or [] if c.get("type") == type), None)
    return None if found is None else found.get("status")


def without_condition(conditions: list[dict[str, Any]] | None, type: str) -> list[dict[str, Any]]:
    return [c for c in conditions or [] if c.get("type") != type]


def set_progress(
    conditions: list[dict[str, Any]] | None,
    progress: Progress,
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """`Reconciling` or `Stalled` set True with `reason`, the other removed; both for SETTLED."""
    result = list(conditions or [])
    for type in (RECONCILING, STALLED):
        if progress.value == type:
            result = set_condition(
                result,
                type=type,
                status=ConditionStatus.TRUE,
                reason=reason,
                message=message,
                generation=generation,
                now=now,
            )
        else:
            result = without_condition(result, type)
    return result


def set_ready(
    conditions: list[dict[str, Any]] | None,
    *,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    progress: Progress = Progress.SETTLED,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """`Ready` and the kstatus progress conditions, all with the same reason and message."""
    result = set_condition(
        conditions,
        type=READY,
        status=status,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return set_progress(
        result, progress, reason=reason, message=message, generation=generation, now=now
    )


def stalled_status(
    status: Mapping[str, Any], *, phase: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    """The status of a spec the operator cannot use until it changes: Ready False, Stalled."""
    return {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": set_ready(
            status.get("conditions"),
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            generation=generation,
            progress=Progress.STALLED,
        ),
    }
