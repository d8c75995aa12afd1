"""The rollout's state as kept in status: the current rollout, the known-good and the failed
revision, the history; and which template the Deployment runs given that state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orion_operator.api.apideployment import Gate, RevisionStatus, RolloutResult, RolloutStatus
from orion_operator.rollout.render import Manifest

ACTIVE = (RolloutResult.RUNNING, RolloutResult.BLOCKED)


@dataclass(frozen=True)
class Stable:
    """The last known-good revision: what an automatic rollback puts back."""

    revision: int
    image: str
    key: str
    template: Manifest


@dataclass(frozen=True)
class Failed:
    """The rolled-back spec: not rolled out again until the spec changes."""

    image: str
    generation: int | None
    key: str


@dataclass(frozen=True)
class Book:
    rollout: RolloutStatus | None = None
    stable: Stable | None = None
    failed: Failed | None = None
    history: tuple[RevisionStatus, ...] = ()

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Book:
        raw = status.get("rollout")
        stable = None
        if status.get("stableKey") and status.get("stableTemplate") is not None:
            stable = Stable(
                revision=int(status.get("stableRevision") or 0),
                image=str(status.get("stableImage") or ""),
                key=str(status["stableKey"]),
                template=dict(status["stableTemplate"]),
            )
        failed = None
        if status.get("failedKey"):
            failed = Failed(
                image=str(status.get("failedImage") or ""),
                generation=status.get("failedGeneration"),
                key=str(status["failedKey"]),
            )
        return cls(
            rollout=RolloutStatus.model_validate(raw) if raw else None,
            stable=stable,
            failed=failed,
            history=tuple(RevisionStatus.model_validate(h) for h in status.get("history") or []),
        )

    def status_fields(self) -> dict[str, Any]:
        """The status keys this book owns; None removes a key (merge patch)."""
        stable, failed = self.stable, self.failed
        return {
            "rollout": (
                self.rollout.model_dump(mode="json", exclude_none=True) if self.rollout else None
            ),
            "stableImage": stable.image if stable else None,
            "stableRevision": stable.revision if stable else None,
            "stableKey": stable.key if stable else None,
            "stableTemplate": stable.template if stable else None,
            "failedImage": failed.image if failed else None,
            "failedGeneration": failed.generation if failed else None,
            "failedKey": failed.key if failed else None,
            "history": [h.model_dump(mode="json", exclude_none=True) for h in self.history],
        }


def target(book: Book) -> tuple[Manifest, str] | None:
    """The pod template (and its rollout key) the Deployment runs now; None: no Deployment yet."""
    rollout, stable = book.rollout, book.stable
    if rollout is None:
        return (stable.template, stable.key) if stable else None
    if rollout.result is RolloutResult.ROLLED_BACK and not rollout.manual and stable is not None:
        return stable.template, stable.key
    if rollout.result is RolloutResult.SUCCEEDED or rollout.result is RolloutResult.ROLLED_BACK:
        return rollout.template, rollout.key
    if rollout.gate in (Gate.DEPLOY, Gate.VERIFY) and rollout.template:
        return rollout.template, rollout.key
    if rollout.from_template is not None and rollout.from_key is not None:
        return rollout.from_template, rollout.from_key
    return None


def active(book: Book) -> bool:
    """A rollout is under way: probes and resyncs drive it on."""
    return book.rollout is not None and book.rollout.result in ACTIVE
