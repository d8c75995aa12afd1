"""The Argo CD health checks (docs/argocd/) and kstatus agree on statuses the operator wrote.

The objects under tests/fixtures/statuses/ were recorded from a live control plane by
tests/integration/test_gitops_health.py (ORION_RECORD_STATUSES=1), which checks the same
expectations on the live objects.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.api.apideployment import ApiPhase
from orion_operator.api.common import ConditionStatus
from orion_operator.conditions import (
    READY,
    RECONCILING,
    STALLED,
    Progress,
    set_progress,
    set_ready,
)
from orion_operator.rollout.status import derive_progress, invalid_spec_patch
from tests.gitops_health import (
    ARGOCD_CHECKS,
    CURRENT,
    FAILED,
    GROUP,
    IN_PROGRESS,
    argo_health,
    health_script,
    kstatus,
)

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ROOT / "tests" / "fixtures" / "statuses"
KINDS = ("Tenant", "Backup", "BackupSchedule", "Restore", "ApiDeployment", "DatabaseMaintenance")

# Recording → (kstatus, Argo CD health). Suspended is Current for kstatus: nothing is pending.
EXPECTED = {
    "tenant-ready": (CURRENT, "Healthy"),
    "tenant-suspended": (CURRENT, "Suspended"),
    "tenant-secret-missing": (IN_PROGRESS, "Degraded"),
    "backup-running": (IN_PROGRESS, "Progressing"),
    "backup-completed": (CURRENT, "Healthy"),
    "backup-failed": (FAILED, "Degraded"),
    "restore-pending": (IN_PROGRESS, "Progressing"),
    "restore-completed": (CURRENT, "Healthy"),
    "restore-failed": (FAILED, "Degraded"),
    "backupschedule-active": (CURRENT, "Healthy"),
    "backupschedule-suspended": (CURRENT, "Suspended"),
    "backupschedule-invalid": (FAILED, "Degraded"),
    "databasemaintenance-scheduled": (CURRENT, "Healthy"),
    "databasemaintenance-succeeded": (CURRENT, "Healthy"),
    "databasemaintenance-run-failed": (IN_PROGRESS, "Degraded"),
    "databasemaintenance-suspended": (CURRENT, "Suspended"),
    "databasemaintenance-invalid": (FAILED, "Degraded"),
    "apideployment-healthy": (CURRENT, "Healthy"),
    "apideployment-degraded": (IN_PROGRESS, "Degraded"),
    "apideployment-rolling-out": (IN_PROGRESS, "Progressing"),
    "apideployment-rolled-back": (FAILED, "Degraded"),
}

# Which Argo CD health each kstatus result may go with.
AGREEING = {
    CURRENT: {"Healthy", "Suspended"},
    IN_PROGRESS: {"Progressing", "Degraded"},
    FAILED: {"Degraded"},
}


def recording(name: str) -> dict[str, Any]:
    return yaml.safe_load((STATUSES / f"{name}.yaml").read_text())


def test_every_recording_has_an_expectation_and_every_kind_is_recorded() -> None:
    assert {path.stem for path in STATUSES.glob("*.yaml")} == set(EXPECTED)
    assert {recording(name)["kind"] for name in EXPECTED} == set(KINDS)


def test_the_health_check_is_installed_for_every_kind() -> None:
    data = yaml.safe_load((ARGOCD_CHECKS / "argocd-cm.yaml").read_text())["data"]
    assert set(data) == {f"resource.customizations.health.{GROUP}_{kind}" for kind in KINDS}
    crds = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in ROOT.glob("crds/*")}
    assert set(KINDS) <= crds


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_status_reads_as_expected_in_kstatus_and_argo_cd(name: str) -> None:
    obj = recording(name)
    status, message = argo_health(obj)
    assert (kstatus(obj), status) == EXPECTED[name]
    assert status in AGREEING[kstatus(obj)]
    # The message carries the operator's reason, so Argo CD's UI says why.
    reasons = {c["reason"] for c in obj["status"]["conditions"]}
    assert message.split(":")[0] in reasons


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_spec_change_not_yet_reconciled_is_progressing_for_both(name: str) -> None:
    obj = copy.deepcopy(recording(name))
    obj["metadata"]["generation"] += 1
    assert kstatus(obj) == IN_PROGRESS
    assert argo_health(obj) == (
        "Progressing",
        f"Waiting for the operator to reconcile generation {obj['metadata']['generation']}",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_the_operator_has_not_reported_on_is_progressing(kind: str) -> None:
    fresh = {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, "metadata": {"generation": 1}}
    assert argo_health(fresh)[0] == "Progressing"
    assert argo_health({**fresh, "status": {}})[0] == "Progressing"


def test_only_kinds_that_can_be_suspended_report_suspended() -> None:
    obj = copy.deepcopy(recording("backup-completed"))
    obj["status"]["phase"] = "Suspended"  # no Backup phase: the check must not invent one
    assert argo_health(obj)[0] == "Healthy"


def test_the_argocd_cm_snippet_is_generated_from_the_health_checks() -> None:
    rendered = subprocess.run(
        [sys.executable, str(ARGOCD_CHECKS / "render-argocd-cm")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ARGOCD_CHECKS / "argocd-cm.yaml").read_text() == rendered
    data = yaml.safe_load(rendered)["data"]
    for kind in KINDS:
        key = f"resource.customizations.health.{GROUP}_{kind}"
        assert data[key] == health_script(kind).read_text()


def test_ready_with_progress_sets_one_of_reconciling_or_stalled_and_removes_the_other() -> None:
    running = set_ready(
        None,
        status=ConditionStatus.FALSE,
        reason="Running",
        message="the backup is running",
        generation=1,
        progress=Progress.RECONCILING,
    )
    assert {(c["type"], c["status"]) for c in running} == {(READY, "False"), (RECONCILING, "True")}
    failed = set_ready(
        running,
        status=ConditionStatus.FALSE,
        reason="SecretNotFound",
        message="m",
        generation=1,
        progress=Progress.STALLED,
    )
    assert {(c["type"], c["status"], c["reason"]) for c in failed} == {
        (READY, "False", "SecretNotFound"),
        (STALLED, "True", "SecretNotFound"),
    }
    settled = set_progress(failed, Progress.SETTLED, reason="", message="", generation=2)
    assert [c["type"] for c in settled] == [READY]
    assert settled[0]["observedGeneration"] == 1  # Ready itself is left as it was


def test_an_api_deployment_past_its_progress_deadline_is_stalled() -> None:
    past_deadline = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    assert derive_progress(past_deadline, ApiPhase.UNAVAILABLE) is Progress.STALLED
    manual = {"result": "RolledBack", "manual": True}
    assert derive_progress([], ApiPhase.ROLLED_BACK, manual) is Progress.SETTLED
    assert derive_progress([], ApiPhase.ROLLED_BACK, {"result": "RolledBack"}) is Progress.STALLED
    assert derive_progress([], ApiPhase.AVAILABLE) is Progress.RECONCILING
    assert derive_progress([], ApiPhase.DOWN) is Progress.SETTLED


def test_an_api_deployment_spec_the_operator_cannot_use_is_stalled_for_both_readers() -> None:
    healthy = recording("apideployment-healthy")
    healthy["metadata"]["generation"] += 1  # the unusable spec
    patch = invalid_spec_patch("bad", healthy["metadata"]["generation"], healthy)
    obj = {**healthy, "status": {**healthy["status"], **patch}}
    assert (kstatus(obj), argo_health(obj)) == (FAILED, ("Degraded", "InvalidSpec: bad"))
