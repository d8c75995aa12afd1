"""What the rollout state machine reads and returns: the spec's wishes, the handler's
observations for each gate, and the actions for the handler to take.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from orion_operator.alerts.model import Severity
from orion_operator.health.contract import HealthState
from orion_operator.rollout.book import Book
from orion_operator.rollout.predeploy import BackupView
from orion_operator.rollout.render import ROLLOUT_KEY_ANNOTATION, Manifest, template_image


@dataclass(frozen=True)
class Desired:
    key: str
    uid: str
    generation: int
    image: str
    template: Manifest
    backup_within: datetime.timedelta | None
    backup_name: str
    migrations: bool
    migration_job_name: str
    progress_deadline: datetime.timedelta
    verify: datetime.timedelta
    failure_threshold: int
    smoke: bool
    auto_rollback: bool
    rollback_to: int | None
    history_limit: int


# --- what the handler observed ------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentView:
    """The owned Deployment as the Deploy gate reads it (the `kubectl rollout status` rules)."""

    key: str | None
    image: str | None
    complete: bool
    deadline_exceeded: bool
    summary: str


def deployment_view(deployment: Mapping[str, Any]) -> DeploymentView:
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(metadata.get("generation") or 0)
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    exceeded = observed and progressing.get("reason") == "ProgressDeadlineExceeded"
    complete = (
        observed
        and not exceeded
        and updated >= desired
        and replicas <= updated
        and available >= updated
    )
    summary = f"{updated}/{desired} replicas updated, {available} available"
    if exceeded:
        summary += f" ({progressing.get('message') or 'ProgressDeadlineExceeded'})"
    return DeploymentView(
        key=(metadata.get("annotations") or {}).get(ROLLOUT_KEY_ANNOTATION),
        image=template_image(spec.get("template") or {}),
        complete=complete,
        deadline_exceeded=exceeded,
        summary=summary,
    )


@dataclass(frozen=True)
class ProbeView:
    """One /health probe of the health daemon, fed to verification exactly once."""

    state: HealthState
    message: str


@dataclass(frozen=True)
class TriageView:
    """The runbook's incident checks: `culprit` names the dependency that is down, if any."""

    culprit: str | None
    summary: str


@dataclass(frozen=True)
class SmokeView:
    passed: bool
    message: str


@dataclass(frozen=True)
class JobView:
    state: Literal["missing", "running", "succeeded", "failed"]
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RecentBackup:
    name: str | None  # None: no Completed platform Backup recent enough


@dataclass(frozen=True)
class Observed:
    now: datetime.datetime
    deployment: DeploymentView | None = None
    probe: ProbeView | None = None
    missing_configuration: tuple[str, ...] | None = None
    recent_backup: RecentBackup | None = None
    backup: BackupView | None = None
    migration: JobView | None = None
    triage: TriageView | None = None
    smoke: SmokeView | None = None


class Need(StrEnum):
    CONFIGURATION = "configuration"
    RECENT_BACKUP = "recent-backup"
    BACKUP = "backup"
    MIGRATION = "migration"
    TRIAGE = "triage"
    SMOKE = "smoke"


# --- what the handler does --------------------------------------------------------------


@dataclass(frozen=True)
class CreateBackup:
    name: str
    revision: int


@dataclass(frozen=True)
class CreateMigrationJob:
    name: str
    revision: int
    template: Manifest


@dataclass(frozen=True)
class Notice:
    """An Event on the ApiDeployment; with a severity, an alert too."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    severity: Severity | None = None
    check: str | None = None
    revision: int | None = None


Action = CreateBackup | CreateMigrationJob | Notice


@dataclass(frozen=True)
class Step:
    book: Book
    actions: tuple[Action, ...] = ()
    need: Need | None = None
    subject: str | None = None  # the Backup or Job `need` is about
