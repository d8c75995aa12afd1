"""The rollout state machine, step by step, against a small fake world (no Kubernetes)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from orion_operator.alerts.model import Severity
from orion_operator.api.apideployment import ApiDeploymentSpec, Gate, RolloutResult
from orion_operator.health.contract import HealthState
from orion_operator.rollout.book import Book, target
from orion_operator.rollout.gates import (
    CreateBackup,
    CreateMigrationJob,
    DeploymentView,
    Desired,
    JobView,
    Need,
    Notice,
    Observed,
    ProbeView,
    RecentBackup,
    SmokeView,
    Step,
    TriageView,
    deployment_view,
)
from orion_operator.rollout.machine import advance
from orion_operator.rollout.predeploy import BackupView
from orion_operator.rollout.render import render_pod_template, rollout_key

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
DB_DOWN = TriageView("database", "database down: connection refused; redis not configured")
ALL_UP = TriageView(None, "database up; redis not configured")


def desired(image: str = "api:1", generation: int = 1, **spec: Any) -> Desired:
    parsed = ApiDeploymentSpec.model_validate({"image": image, **spec})
    template = render_pod_template("api", parsed, image)
    within = parsed.pre_deploy.require_backup_within
    return Desired(
        key=rollout_key(parsed, template),
        uid="uid-1",
        generation=generation,
        image=image,
        template=template,
        backup_within=datetime.timedelta(hours=24) if within else None,
        backup_name=f"api-predeploy-g{generation}",
        migrations=parsed.pre_deploy.migrations is not None,
        migration_job_name=f"api-migrate-g{generation}",
        progress_deadline=datetime.timedelta(seconds=parsed.rollout.progress_deadline_seconds),
        verify=datetime.timedelta(seconds=parsed.rollout.verify_seconds),
        failure_threshold=parsed.health_check.failure_threshold,
        smoke=bool(parsed.rollout.smoke),
        auto_rollback=parsed.rollout.auto_rollback,
        rollback_to=parsed.rollback_to,
        history_limit=parsed.rollout.history_limit,
    )


@dataclasses.dataclass
class World:
    """What the handler would observe; the Deployment follows `target(book)` when asked."""

    book: Book = dataclasses.field(default_factory=Book)
    now: datetime.datetime = T0
    missing: tuple[str, ...] = ()
    recent_backup: str | None = None
    backup: BackupView = dataclasses.field(default_factory=lambda: BackupView(None))
    job: JobView = dataclasses.field(default_factory=lambda: JobView("succeeded"))
    triage: TriageView = ALL_UP
    smoke: SmokeView = dataclasses.field(default_factory=lambda: SmokeView(True, "1 passed"))
    deployment: DeploymentView | None = None
    pods_become_ready: bool = True
    needs: list[Need] = dataclasses.field(default_factory=list)
    actions: list[Any] = dataclasses.field(default_factory=list)

    def step(self, want: Desired, probe: HealthState | None = None) -> Step:
        seen = Observed(
            now=self.now,
            deployment=self.deployment,
            probe=ProbeView(probe, f"/health {probe.value}") if probe else None,
        )
        answers = {
            Need.CONFIGURATION: {"missing_configuration": self.missing},
            Need.RECENT_BACKUP: {"recent_backup": RecentBackup(self.recent_backup)},
            Need.BACKUP: {"backup": self.backup},
            Need.MIGRATION: {"migration": self.job},
            Need.TRIAGE: {"triage": self.triage},
            Need.SMOKE: {"smoke": self.smoke},
        }
        for _ in range(8):
            step = advance(want, self.book, seen)
            if step.need is None:
                break
            assert step.book == self.book, "a step that needs input changes nothing"
            self.needs.append(step.need)
            seen = dataclasses.replace(seen, **answers[step.need])
        self.book = step.book
        self.actions += step.actions
        self._deploy()
        return step

    def _deploy(self) -> None:
        running = target(self.book)
        if running is None:
            return
        template, key = running
        image = template["spec"]["containers"][0]["image"]
        self.deployment = DeploymentView(key, image, self.pods_become_ready, False, "2/2")

    def notices(self, reason: str | None = None) -> list[Notice]:
        return [a for a in self.actions if isinstance(a, Notice) and reason in (None, a.reason)]

    def later(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    @property
    def rollout(self) -> Any:
        assert self.book.rollout is not None
        return self.book.rollout

    def running_image(self) -> str | None:
        return self.deployment.image if self.deployment else None


def first_release(world: World, **spec: Any) -> Desired:
    want = desired("api:1", 1, **spec)
    # Gates pass, the Deployment gets api:1, its pods are ready: revision 1 is stable.
    for _ in range(4):
        world.step(want)
    assert world.rollout.result is RolloutResult.SUCCEEDED
    return want


def test_first_rollout_deploys_without_verification_and_becomes_stable() -> None:
    world = World()
    want = desired("api:1")
    world.step(want)
    assert world.rollout.gate is Gate.DEPLOY and world.rollout.result is RolloutResult.RUNNING
    assert world.running_image() == "api:1"

    world.step(want)
    assert world.rollout.result is RolloutResult.SUCCEEDED
    assert world.book.stable is not None and world.book.stable.image == "api:1"
    assert world.rollout.verify is None  # nothing to roll back to: not verified
    assert [h.result for h in world.book.history] == [RolloutResult.SUCCEEDED]
    assert [n.reason for n in world.notices()] == [
        "RolloutStarted",
        "RollingOut",
        "RolloutSucceeded",
    ]


def test_scaling_does_not_start_a_rollout() -> None:
    world = World()
    first_release(world)
    scaled = desired("api:1", 2, replicas=7, minReplicas=1, maxReplicas=9)
    before = world.book
    world.step(scaled)
    assert world.book == before


def test_missing_configuration_blocks_before_anything_restarts_and_says_what() -> None:
    world = World()
    first_release(world)
    world.missing = ('Secret "orion-api-secrets" not found (spec.envFrom[0].secretRef)',)
    want = desired("api:2", 2)
    world.step(want)
    world.step(want)
    assert world.rollout.result is RolloutResult.BLOCKED
    assert "orion-api-secrets" in world.rollout.message
    assert world.running_image() == "api:1"
    (blocked,) = world.notices("ConfigurationMissing")
    assert blocked.severity is Severity.WARNING and blocked.check == "rollout/configuration"

    world.missing = ()
    world.step(want)
    assert world.rollout.gate is Gate.DEPLOY and world.running_image() == "api:2"


def test_a_recent_backup_is_used_and_none_is_taken() -> None:
    world = World(recent_backup="nightly-1")
    first_release(world, preDeploy={"requireBackupWithin": "24h"})
    assert world.rollout.backup == "nightly-1" and not world.rollout.backup_created
    assert not [a for a in world.actions if isinstance(a, CreateBackup)]


def test_without_a_recent_backup_one_is_taken_first_and_waited_for() -> None:
    world = World()
    first_release(world)
    want = desired("api:2", 2, preDeploy={"requireBackupWithin": "24h"})
    world.step(want)
    assert world.rollout.gate is Gate.BACKUP
    assert [a for a in world.actions if isinstance(a, CreateBackup)] == [
        CreateBackup("api-predeploy-g2", 2)
    ]
    world.backup = BackupView("Running", owner_uid="uid-1")
    world.step(want)
    world.step(want)
    assert world.rollout.gate is Gate.BACKUP and world.running_image() == "api:1"
    assert len([a for a in world.actions if isinstance(a, CreateBackup)]) == 1

    world.backup = BackupView("Completed", owner_uid="uid-1")
    world.step(want)
    assert world.rollout.gate is Gate.DEPLOY and world.running_image() == "api:2"


def test_a_failed_backup_stops_the_rollout_with_the_reason() -> None:
    world = World()
    first_release(world)
    want = desired("api:2", 2, preDeploy={"requireBackupWithin": "24h"})
    world.step(want)
    world.backup = BackupView("Failed", "DatabaseUnreachable: connection refused", "uid-1")
    world.step(want)
    assert world.rollout.result is RolloutResult.FAILED
    assert world.rollout.reason == "BackupFailed"
    assert "connection refused" in world.rollout.message
    assert world.running_image() == "api:1"
    (alert,) = world.notices("BackupFailed")
    assert alert.severity is Severity.CRITICAL and alert.check == "rollout/backup"
    # Nothing more happens for this spec.
    world.step(want)
    assert world.rollout.result is RolloutResult.FAILED


def test_a_failed_migration_job_leaves_the_old_image_and_names_the_backup() -> None:
    world = World(recent_backup="nightly-1")
    spec = {"preDeploy": {"requireBackupWithin": "24h", "migrations": {}}}
    first_release(world, **spec)
    want = desired("api:2", 2, **spec)
    world.step(want)
    assert world.rollout.gate is Gate.MIGRATIONS
    (job,) = [a for a in world.actions if isinstance(a, CreateMigrationJob) and a.revision == 2]
    assert job.name == "api-migrate-g2"
    assert job.template["spec"]["containers"][0]["image"] == "api:2"

    world.job = JobView("running")
    world.step(want)
    assert world.rollout.gate is Gate.MIGRATIONS
    world.job = JobView(
        "failed", "DeadlineExceeded", "Job was active longer than specified deadline"
    )
    world.step(want)
    assert world.rollout.result is RolloutResult.FAILED
    assert world.rollout.reason == "MigrationsFailed"
    assert "DeadlineExceeded" in world.rollout.message
    assert "the Deployment keeps api:1" in world.rollout.message
    assert "Backup nightly-1" in world.rollout.message
    assert world.running_image() == "api:1"


def test_an_upgrade_is_verified_for_the_window_then_becomes_stable() -> None:
    world = World()
    first_release(world)
    want = desired("api:2", 2, rollout={"verifySeconds": 10})
    world.step(want)
    world.step(want)
    assert world.rollout.gate is Gate.VERIFY
    for _ in range(5):
        world.later(3)
        world.step(want, HealthState.OK)
    assert world.rollout.result is RolloutResult.SUCCEEDED
    assert world.book.stable is not None and world.book.stable.image == "api:2"
    assert world.rollout.verify is not None and world.rollout.verify.probes == 4


def test_a_bad_image_is_rolled_back_after_failure_threshold_probes_and_remembered() -> None:
    world = World()
    first_release(world)
    want = desired("api:bad", 2, healthCheck={"failureThreshold": 3})
    world.step(want)
    world.step(want)
    for _ in range(2):
        world.later(1)
        world.step(want, HealthState.DOWN)
    assert world.rollout.gate is Gate.VERIFY and world.running_image() == "api:bad"
    world.later(1)
    world.step(want, HealthState.DOWN)

    assert world.rollout.result is RolloutResult.ROLLED_BACK
    assert world.running_image() == "api:1"
    assert world.book.failed is not None and world.book.failed.image == "api:bad"
    assert "3 of 3 probes were not ok" in world.rollout.message
    (alert,) = world.notices("RolledBack")
    assert alert.severity is Severity.CRITICAL and alert.check == "rollout/rollback"
    assert Need.TRIAGE in world.needs

    # The same spec again (a GitOps repository re-applying it) changes nothing.
    again = dataclasses.replace(want, generation=3)
    before = world.book
    world.step(again)
    assert world.book == before and world.running_image() == "api:1"

    # A new spec does start a rollout.
    world.step(desired("api:3", 4))
    assert world.rollout.revision == 3 and world.rollout.image == "api:3"


def test_a_rollback_of_a_release_with_migrations_says_they_stay_and_names_the_backup() -> None:
    world = World(recent_backup="nightly-1")
    spec = {"preDeploy": {"requireBackupWithin": "24h", "migrations": {}}}
    first_release(world, **spec)
    want = desired("api:bad", 2, **spec)
    for _ in range(3):
        world.step(want)
    assert world.rollout.gate is Gate.VERIFY
    for _ in range(3):
        world.step(want, HealthState.ERROR)
    assert world.rollout.result is RolloutResult.ROLLED_BACK
    assert "ran database migrations, which are not reverted" in world.rollout.message
    assert "restore Backup nightly-1" in world.rollout.message
    assert world.book.history[-1].backup == "nightly-1"
    assert world.book.history[-1].migrations_ran


def test_a_database_outage_during_verification_does_not_roll_back_and_says_why() -> None:
    world = World(triage=DB_DOWN)
    first_release(world)
    want = desired("api:2", 2, rollout={"verifySeconds": 5})
    world.step(want)
    world.step(want)
    for _ in range(6):
        world.later(1)
        world.step(want, HealthState.ERROR)
    assert world.rollout.result is RolloutResult.RUNNING
    assert world.rollout.verify.paused
    assert world.running_image() == "api:2"
    assert "database down" in world.rollout.message and "not rolled back" in world.rollout.message
    assert len(world.notices("RollbackSkipped")) == 1
    assert not world.notices("RolledBack")

    # The database is back and so is the API: the window starts over and passes.
    world.triage = ALL_UP
    world.later(1)
    world.step(want, HealthState.OK)
    assert not world.rollout.verify.paused
    assert world.notices("VerificationResumed")
    for _ in range(5):
        world.later(1.5)
        world.step(want, HealthState.OK)
    assert world.rollout.result is RolloutResult.SUCCEEDED


def test_when_the_database_is_back_but_the_api_is_not_it_is_rolled_back() -> None:
    world = World(triage=DB_DOWN)
    first_release(world)
    want = desired("api:2", 2)
    world.step(want)
    world.step(want)
    for _ in range(3):
        world.step(want, HealthState.ERROR)
    assert world.rollout.verify.paused
    world.triage = ALL_UP
    for _ in range(3):
        world.step(want, HealthState.ERROR)
    assert world.rollout.result is RolloutResult.ROLLED_BACK


def test_the_progress_deadline_rolls_back() -> None:
    world = World()
    first_release(world)
    world.pods_become_ready = False
    want = desired("api:2", 2, rollout={"progressDeadlineSeconds": 30})
    world.step(want)
    world.later(20)
    world.step(want)
    assert world.rollout.gate is Gate.DEPLOY
    world.later(11)
    world.step(want)
    assert world.rollout.result is RolloutResult.ROLLED_BACK
    assert world.rollout.reason == "ProgressDeadlineExceeded"
    assert world.running_image() == "api:1"


def test_the_deployments_own_deadline_condition_counts_too() -> None:
    view = deployment_view(
        {
            "metadata": {"generation": 3, "annotations": {"orion.io/rollout-key": "k"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": []}}},
            "status": {
                "observedGeneration": 3,
                "replicas": 3,
                "updatedReplicas": 1,
                "conditions": [
                    {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "x"}
                ],
            },
        }
    )
    assert view.deadline_exceeded and not view.complete and view.key == "k"


def test_deployment_view_is_complete_only_when_every_replica_is_new_and_available() -> None:
    def view(**status: int) -> DeploymentView:
        return deployment_view(
            {
                "metadata": {"generation": 2},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 2, **status},
            }
        )

    assert view(replicas=2, updatedReplicas=2, availableReplicas=2).complete
    assert not view(replicas=3, updatedReplicas=2, availableReplicas=2).complete  # old pod left
    assert not view(replicas=2, updatedReplicas=1, availableReplicas=2).complete
    assert not view(replicas=2, updatedReplicas=2, availableReplicas=1).complete
    stale = deployment_view(
        {
            "metadata": {"generation": 3},
            "spec": {"replicas": 0},
            "status": {"observedGeneration": 2},
        }
    )
    assert not stale.complete


def test_without_autorollback_a_failed_verification_only_reports() -> None:
    world = World()
    first_release(world)
    want = desired("api:bad", 2, rollout={"autoRollback": False})
    world.step(want)
    world.step(want)
    for _ in range(3):
        world.step(want, HealthState.DOWN)
    assert world.rollout.result is RolloutResult.FAILED
    assert "autoRollback is false" in world.rollout.message
    assert world.running_image() == "api:bad"


def test_a_failing_smoke_request_rolls_back() -> None:
    world = World(smoke=SmokeView(False, "POST /auth/login answered 500, expected 200, 401"))
    first_release(world)
    want = desired("api:2", 2, rollout={"smoke": [{"method": "POST", "path": "/auth/login"}]})
    world.step(want)
    world.step(want)
    world.step(want, HealthState.OK)
    assert world.rollout.result is RolloutResult.ROLLED_BACK
    assert world.rollout.reason == "SmokeFailed" and "/auth/login" in world.rollout.message


def test_a_newer_spec_during_verification_supersedes_it_and_keeps_its_pods_until_deploy() -> None:
    world = World(recent_backup=None)
    first_release(world)
    world.step(desired("api:2", 2))
    world.step(desired("api:2", 2))
    assert world.rollout.gate is Gate.VERIFY
    newer = desired("api:3", 3, preDeploy={"requireBackupWithin": "24h"})
    world.step(newer)
    assert world.book.history[-1].result is RolloutResult.SUPERSEDED
    assert world.rollout.gate is Gate.BACKUP
    assert world.running_image() == "api:2"  # what ran, not the stable one


def test_manual_rollback_to_a_succeeded_revision_and_back() -> None:
    world = World()
    first_release(world)
    world.step(desired("api:2", 2, rollout={"verifySeconds": 0}))
    world.step(desired("api:2", 2, rollout={"verifySeconds": 0}))
    assert world.book.stable is not None and world.book.stable.revision == 2

    back = desired("api:2", 3, rollout={"verifySeconds": 0}, rollbackTo=1)
    world.step(back)
    assert world.running_image() == "api:1"
    world.step(back)
    assert world.rollout.result is RolloutResult.ROLLED_BACK and world.rollout.manual
    assert world.book.stable.revision == 1

    # Removing rollbackTo rolls the spec out again, as a new revision.
    world.step(desired("api:2", 4, rollout={"verifySeconds": 0}))
    assert world.rollout.revision == 3 and world.rollout.gate is Gate.DEPLOY
    assert world.running_image() == "api:2"


def test_manual_rollback_to_an_unknown_revision_changes_nothing_and_says_so() -> None:
    world = World()
    first_release(world)
    world.step(desired("api:1", 2, rollbackTo=7))
    assert world.rollout.result is RolloutResult.FAILED
    assert world.rollout.reason == "RevisionNotFound"
    assert "succeeded: 1" in world.rollout.message
    assert world.running_image() == "api:1"


def test_a_deployment_that_already_runs_the_image_is_adopted_without_gates() -> None:
    live = DeploymentView(None, "api:1", True, False, "2/2")
    world = World(deployment=live, missing=("Secret x not found",))
    world.step(desired("api:1"))
    assert world.rollout.result is RolloutResult.SUCCEEDED and world.rollout.reason == "Adopted"
    assert world.book.stable is not None and world.book.stable.revision == 1


def test_the_book_round_trips_through_status() -> None:
    world = World(recent_backup="nightly-1")
    first_release(world, preDeploy={"requireBackupWithin": "24h"})
    world.step(desired("api:2", 2, preDeploy={"requireBackupWithin": "24h"}))
    assert Book.from_status(world.book.status_fields()) == world.book


def test_history_keeps_the_last_n_revisions() -> None:
    world = World()
    first_release(world, rollout={"historyLimit": 2, "verifySeconds": 0})
    for generation in (2, 3, 4):
        want = desired(
            f"api:{generation}", generation, rollout={"historyLimit": 2, "verifySeconds": 0}
        )
        world.step(want)
        world.step(want)
    assert [h.revision for h in world.book.history] == [3, 4]


def test_removing_rollbackto_does_not_roll_out_the_rolled_back_spec_again() -> None:
    world = World()
    first_release(world)
    bad = desired("api:bad", 2)
    world.step(bad)
    world.step(bad)
    for _ in range(3):
        world.step(bad, HealthState.DOWN)
    assert world.rollout.result is RolloutResult.ROLLED_BACK

    world.step(desired("api:bad", 3, rollbackTo=1))
    world.step(desired("api:bad", 3, rollbackTo=1))
    assert world.rollout.manual and world.rollout.result is RolloutResult.ROLLED_BACK

    world.step(desired("api:bad", 4))
    assert world.rollout.manual and world.running_image() == "api:1"
    assert "not rolled out again until the spec changes" in world.rollout.message


def test_after_a_restart_the_rollout_continues_from_status_without_repeating_a_gate() -> None:
    world = World()
    spec = {"preDeploy": {"migrations": {}}}
    first_release(world, **spec)
    want = desired("api:2", 2, **spec)
    world.job = JobView("running")
    world.step(want)
    jobs = [a for a in world.actions if isinstance(a, CreateMigrationJob)]

    # A new operator process reads the state back from status and goes on from there.
    world.book = Book.from_status(world.book.status_fields())
    world.step(want)
    world.step(want)
    assert [a for a in world.actions if isinstance(a, CreateMigrationJob)] == jobs
    assert world.rollout.gate is Gate.MIGRATIONS and world.running_image() == "api:1"
    world.job = JobView("succeeded")
    world.book = Book.from_status(world.book.status_fields())
    world.step(want)  # the Deployment gets api:2
    world.step(want)  # and its pods are ready
    assert world.rollout.gate is Gate.VERIFY and world.running_image() == "api:2"
