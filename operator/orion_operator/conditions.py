"""The one place that writes `status.conditions`: named types, stable transition times."""

from __future__ import annotations

import datetime
from typing import Any

from orion_operator.api.common import ConditionStatus

READY = "Ready"


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
