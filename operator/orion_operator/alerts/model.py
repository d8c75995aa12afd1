"""What an alert is, independent of the channel that carries it."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Transition(StrEnum):
    FIRING = "firing"  # the problem was just confirmed
    REPEAT = "repeat"  # still there after the repeat interval
    RESOLVED = "resolved"  # the recovery alert


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Alert:
    """One notification. `id` is unique per notification and stable across delivery retries."""

    id: str
    check: str  # e.g. "database", "redis", "queue/dian", "api", "backup"
    reason: str  # CamelCase, also the Event reason: DatabaseDown, HealthDegraded, Recovered...
    severity: Severity
    transition: Transition
    title: str
    message: str
    subject: ObjectRef
    occurred_at: datetime.datetime
    details: dict[str, str] = field(default_factory=dict)

    def as_payload(self) -> dict[str, object]:
        """The JSON body shared by the webhook and (as text) the other channels."""
        return {
            "id": self.id,
            "check": self.check,
            "reason": self.reason,
            "severity": self.severity.value,
            "transition": self.transition.value,
            "title": self.title,
            "message": self.message,
            "object": {
                "kind": self.subject.kind,
                "namespace": self.subject.namespace,
                "name": self.subject.name,
            },
            "occurredAt": self.occurred_at.astimezone(datetime.UTC).isoformat(),
            "details": dict(self.details),
        }


def firing_alert(
    subject: ObjectRef,
    *,
    check: str,
    reason: str,
    message: str,
    severity: Severity = Severity.CRITICAL,
    title: str | None = None,
    details: dict[str, str] | None = None,
    alert_id: str | None = None,
) -> Alert:
    """A new problem on `subject`, titled "<reason>: <Kind> <namespace>/<name>" unless told.

    `alert_id` keeps one id for one problem where the caller can name it; otherwise each call
    is a new notification.
    """
    return Alert(
        id=alert_id or str(uuid.uuid4()),
        check=check,
        reason=reason,
        severity=severity,
        transition=Transition.FIRING,
        title=title or f"{reason}: {subject}",
        message=message,
        subject=subject,
        occurred_at=datetime.datetime.now(datetime.UTC),
        details=dict(details or {}),
    )
