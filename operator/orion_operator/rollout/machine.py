"""The rollout state machine: the runbook's deployment checklist as gates, and rollbacks.

Pure: `advance(desired, book, seen)` takes what the spec asks for, the rollout state kept in
status (`Book`) and what the handler observed, and returns the next state and the actions to
take (create a Backup or a migration Job, post an Event and alert). When it needs something
the handler has not observed yet (a triage, the smoke requests), it says so in `need` and
changes nothing; the handler gathers it and calls again. The Deployment's template is never an
action: it is `target(book)`, applied on every reconcile, so applying it twice is harmless.

A rollout is keyed by the pod template and the pre-deploy settings (`render.rollout_key`), so
scaling never starts one. Gates, in order: configuration present, a recent backup, migrations,
the Deployment's own rollout, verification. The first rollout (no known-good revision yet) and
a manual rollback are not verified: there is nothing to roll back to, or it is known good.

The inputs and actions are in `rollout.gates`, the state kept in status in `rollout.book`.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from orion_operator.alerts.model import Severity
from orion_operator.api.apideployment import (
    Gate,
    RevisionStatus,
    RolloutResult,
    RolloutStatus,
    VerifyStatus,
)
from orion_operator.api.backup import BackupPhase
from orion_operator.health.contract import HealthState
from orion_operator.rollout.book import ACTIVE, Book, Failed, Stable, target
from orion_operator.rollout.gates import (
    Action,
    CreateBackup,
    CreateMigrationJob,
    Desired,
    JobView,
    Need,
    Notice,
    Observed,
    RecentBackup,
    SmokeView,
    Step,
    TriageView,
)
from orion_operator.rollout.predeploy import BackupView
from orion_operator.rollout.render import Manifest, template_image

GATE_ORDER = list(Gate)
# Alert checks, one per kind of rollout problem, so unrelated failures are told apart.
CHECK_CONFIGURATION = "rollout/configuration"
CHECK_BACKUP = "rollout/backup"
CHECK_MIGRATIONS = "rollout/migrations"
CHECK_VERIFICATION = "rollout/verification"
CHECK_ROLLBACK = "rollout/rollback"


class _Missing(Exception):
    def __init__(self, need: Need, subject: str | None) -> None:
        self.need, self.subject = need, subject


def _seconds(delta: datetime.timedelta) -> str:
    return f"{delta.total_seconds():g}s"


def _way_back(rollout: RolloutStatus) -> str:
    if rollout.backup:
        return (
            f"restore Backup {rollout.backup}, taken before the rollout, to undo them "
            "(a Restore with that backupRef)"
        )
    return "no pre-rollout Backup was taken (spec.preDeploy.requireBackupWithin is unset)"


def _migrations_note(rollout: RolloutStatus) -> str:
    """Migrations are never reverted: say so, and name the way back."""
    if not rollout.migrations_ran:
        return ""
    return (
        f" Revision {rollout.revision} ran database migrations, which are not reverted "
        f"automatically: {_way_back(rollout)}."
    )


class _Machine:
    def __init__(self, desired: Desired, book: Book, seen: Observed) -> None:
        self.desired, self.book, self.seen, self.now = desired, book, seen, seen.now
        self.rollout = book.rollout
        self.stable = book.stable
        self.failed = book.failed
        self.history = list(book.history)
        self.actions: list[Action] = []

    # -- plumbing --

    def _require(self, value: Any, need: Need, subject: str | None = None) -> Any:
        if value is None:
            raise _Missing(need, subject)
        return value

    def _notice(
        self,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        severity: Severity | None = None,
        check: str | None = None,
    ) -> None:
        revision = self.rollout.revision if self.rollout else None
        self.actions.append(Notice(type, reason, message, severity, check, revision))

    def _set(self, **changes: Any) -> RolloutStatus:
        assert self.rollout is not None
        self.rollout = self.rollout.model_copy(update=changes)
        return self.rollout

    def _book(self) -> Book:
        return Book(self.rollout, self.stable, self.failed, tuple(self.history))

    def run(self) -> Step:
        try:
            self._begin()
            # Gates that pass at once run in the same step; one that waits ends it.
            for _ in range(len(GATE_ORDER) + 1):
                rollout = self.rollout
                if rollout is None or rollout.result not in ACTIVE:
                    break
                before = (rollout.gate, rollout.result)
                self._gate(rollout.gate)
                after = self.rollout
                if after is None or (after.gate, after.result) == before:
                    break
        except _Missing as missing:
            return Step(self.book, (), missing.need, missing.subject)
        return Step(self._book(), tuple(self.actions))

    def _next_revision(self) -> int:
        seen = [h.revision for h in self.history]
        if self.rollout is not None:
            seen.append(self.rollout.revision)
        if self.stable is not None:
            seen.append(self.stable.revision)
        return max(seen, default=0) + 1

    def _record(self, rollout: RolloutStatus, result: RolloutResult | None = None) -> None:
        """Into status.history; only succeeded revisions keep their template (rollbackTo)."""
        result = result or rollout.result
        entry = RevisionStatus(
            revision=rollout.revision,
            image=rollout.image,
            generation=rollout.generation,
            key=rollout.key,
            result=result,
            reason=rollout.reason,
            message=rollout.message,
            started_at=rollout.started_at,
            finished_at=rollout.finished_at or self.now,
            backup=rollout.backup,
            migrations_ran=rollout.migrations_ran,
            template=rollout.template if result is RolloutResult.SUCCEEDED else None,
        )
        kept = [h for h in self.history if h.revision != rollout.revision]
        self.history = [*kept, entry][-self.desired.history_limit :]

    def _current_target(self) -> tuple[Manifest | None, str | None]:
        found = target(Book(self.rollout, self.stable, self.failed, tuple(self.history)))
        return (found[0], found[1]) if found else (None, None)

    def _supersede(self) -> None:
        rollout = self.rollout
        if rollout is not None and rollout.result in ACTIVE:
            self._set(
                reason="Superseded",
                message=f"a newer spec (generation {self.desired.generation}) replaced it",
                finished_at=self.now,
            )
            self._record(self.rollout, RolloutResult.SUPERSEDED)  # type: ignore[arg-type]

    # -- which rollout --

    def _begin(self) -> None:
        desired, rollout = self.desired, self.rollout
        if desired.rollback_to is not None:
            self._manual(desired.rollback_to)
            return
        if rollout is None:
            live = self.seen.deployment
            if self.stable is None and live is not None and live.image == desired.image:
                self._adopt()
            else:
                self._start()
            return
        if rollout.key == desired.key:
            return
        failed = self.failed
        if failed is not None and failed.key == desired.key:
            # A GitOps repository may still name what was rolled back: keep what runs.
            if rollout.result not in ACTIVE:
                message = (
                    f"the spec is the one rolled back at generation {failed.generation} "
                    f"(image {failed.image}): not rolled out again until the spec changes"
                )
                if rollout.message != message:
                    self._set(message=message)
            return
        self._start()

    def _adopt(self) -> None:
        """A Deployment made before rollouts were tracked already runs the spec's image."""
        desired = self.desired
        self.stable = Stable(1, desired.image, desired.key, desired.template)
        self.rollout = RolloutStatus(
            revision=1,
            key=desired.key,
            generation=desired.generation,
            image=desired.image,
            gate=Gate.DEPLOY,
            result=RolloutResult.SUCCEEDED,
            reason="Adopted",
            message=f"the Deployment already ran {desired.image}: adopted as revision 1",
            started_at=self.now,
            finished_at=self.now,
            template=desired.template,
        )
        self._record(self.rollout)

    def _start(self) -> None:
        desired = self.desired
        from_template, from_key = self._current_target()
        self._supersede()
        revision = self._next_revision()
        self.rollout = RolloutStatus(
            revision=revision,
            key=desired.key,
            generation=desired.generation,
            image=desired.image,
            gate=Gate.CONFIGURATION,
            result=RolloutResult.RUNNING,
            reason="Started",
            message="checking the configuration the pods need",
            started_at=self.now,
            gate_started_at=self.now,
            template=desired.template,
            from_template=from_template,
            from_key=from_key,
        )
        self._notice(
            "Normal",
            "RolloutStarted",
            f"revision {revision}: rolling out {desired.image} (generation {desired.generation})",
        )

    def _manual(self, revision: int) -> None:
        key = f"rollback-to-{revision}"
        if self.rollout is not None and self.rollout.key == key:
            return
        entry = next(
            (
                h
                for h in reversed(self.history)
                if h.revision == revision and h.result is RolloutResult.SUCCEEDED and h.template
            ),
            None,
        )
        template, image = (entry.template, entry.image) if entry else (None, None)
        if template is None and self.stable is not None and self.stable.revision == revision:
            template, image = self.stable.template, self.stable.image
        from_template, from_key = self._current_target()
        self._supersede()
        if template is None or image is None:
            known = sorted(
                {h.revision for h in self.history if h.result is RolloutResult.SUCCEEDED}
            )
            message = (
                f"spec.rollbackTo: revision {revision} is not a succeeded revision in "
                f"status.history (succeeded: {', '.join(map(str, known)) or 'none'}); "
                "nothing was changed"
            )
            self.rollout = RolloutStatus(
                revision=revision,
                key=key,
                generation=self.desired.generation,
                image=self.rollout.image if self.rollout else self.desired.image,
                manual=True,
                gate=Gate.CONFIGURATION,
                result=RolloutResult.FAILED,
                reason="RevisionNotFound",
                message=message,
                started_at=self.now,
                finished_at=self.now,
                from_template=from_template,
                from_key=from_key,
            )
            self._notice("Warning", "RollbackFailed", message, Severity.WARNING, CHECK_ROLLBACK)
            return
        self.rollout = RolloutStatus(
            revision=revision,
            key=key,
            generation=self.desired.generation,
            image=image,
            manual=True,
            gate=Gate.DEPLOY,
            result=RolloutResult.RUNNING,
            reason="ManualRollback",
            message=f"rolling back to revision {revision} ({image}) as spec.rollbackTo asks",
            started_at=self.now,
            gate_started_at=self.now,
            template=template,
            from_template=from_template,
            from_key=from_key,
        )
        self._notice("Normal", "RollingBack", self.rollout.message)

    # -- the gates --

    def _gate(self, gate: Gate) -> None:
        {
            Gate.CONFIGURATION: self._configuration,
            Gate.BACKUP: self._backup,
            Gate.MIGRATIONS: self._migrations,
            Gate.DEPLOY: self._deploy,
            Gate.VERIFY: self._verify,
        }[gate]()

    def _enter(self, gate: Gate, message: str) -> None:
        self._set(
            gate=gate,
            gate_started_at=self.now,
            result=RolloutResult.RUNNING,
            reason=gate.value,
            message=message,
            held=None,
        )

    def _configuration(self) -> None:
        rollout = self.rollout
        assert rollout is not None
        missing = self._require(self.seen.missing_configuration, Need.CONFIGURATION)
        if missing:
            message = "missing configuration, nothing was restarted: " + "; ".join(missing)
            if rollout.result is not RolloutResult.BLOCKED or rollout.message != message:
                self._set(
                    result=RolloutResult.BLOCKED, reason="ConfigurationMissing", message=message
                )
                self._notice(
                    "Warning",
                    "ConfigurationMissing",
                    message,
                    Severity.WARNING,
                    CHECK_CONFIGURATION,
                )
            return
        if rollout.result is RolloutResult.BLOCKED:
            self._notice("Normal", "ConfigurationPresent", "the missing configuration is there now")
        self._enter(Gate.BACKUP, "looking for a recent backup")

    def _backup(self) -> None:
        desired, rollout = self.desired, self.rollout
        assert rollout is not None
        if desired.backup_within is None:
            self._enter(Gate.MIGRATIONS, "migrations")
            return
        within = _seconds(desired.backup_within)
        if rollout.backup is None:
            recent: RecentBackup = self._require(self.seen.recent_backup, Need.RECENT_BACKUP)
            if recent.name is not None:
                self._set(backup=recent.name, backup_created=False)
                self._notice(
                    "Normal",
                    "BackupRecent",
                    f"Backup {recent.name} completed within {within}: no new backup needed",
                )
                self._enter(Gate.MIGRATIONS, "migrations")
                return
            name = desired.backup_name
            self._set(
                backup=name,
                backup_created=True,
                message=f"no Completed platform Backup within {within}: taking Backup {name}",
            )
            self.actions.append(CreateBackup(name, rollout.revision))
            self._notice("Normal", "BackupStarted", self.rollout.message)  # type: ignore[union-attr]
            return
        if not rollout.backup_created:
            self._enter(Gate.MIGRATIONS, "migrations")
            return
        view: BackupView = self._require(self.seen.backup, Need.BACKUP, rollout.backup)
        if view.phase is None:
            # Deleted while we waited (or never made): make it again under the same name.
            self.actions.append(CreateBackup(rollout.backup, rollout.revision))
            return
        if view.owner_uid is not None and view.owner_uid != desired.uid:
            self._fail(
                "BackupNameTaken",
                f"Backup {rollout.backup} belongs to an earlier ApiDeployment of this name; "
                "delete it (or change the spec) to take a new one. Nothing was restarted",
                CHECK_BACKUP,
            )
            return
        if view.phase == BackupPhase.COMPLETED.value:
            self._notice("Normal", "BackupCompleted", f"Backup {rollout.backup} completed")
            self._enter(Gate.MIGRATIONS, "migrations")
        elif view.phase == BackupPhase.FAILED.value:
            self._fail(
                "BackupFailed",
                f"the pre-rollout Backup {rollout.backup} failed: {view.message or 'no message'}; "
                "nothing was restarted",
                CHECK_BACKUP,
            )
        else:
            message = f"waiting for Backup {rollout.backup} ({view.phase})"
            if rollout.message != message:
                self._set(message=message)

    def _migrations(self) -> None:
        desired, rollout = self.desired, self.rollout
        assert rollout is not None
        if not desired.migrations:
            self._enter_deploy()
            return
        if rollout.migration_job is None:
            name = desired.migration_job_name
            self._set(migration_job=name, message=f"running the migrations as Job {name}")
            self.actions.append(CreateMigrationJob(name, rollout.revision, rollout.template))
            self._notice(
                "Normal",
                "MigrationsStarted",
                f"running the migrations in {rollout.image} as Job {name}",
            )
            return
        job: JobView = self._require(self.seen.migration, Need.MIGRATION, rollout.migration_job)
        if job.state == "running":
            return
        if job.state == "succeeded":
            self._set(migrations_ran=True)
            self._notice("Normal", "MigrationsSucceeded", f"Job {rollout.migration_job} succeeded")
            self._enter_deploy()
            return
        keeps = template_image(rollout.from_template or {}) or "nothing (no Deployment yet)"
        if job.state == "missing":
            detail = f"the migration Job {rollout.migration_job} disappeared before it finished"
        else:
            detail = (
                f"the migration Job {rollout.migration_job} failed: {job.reason}: {job.message}"
            )
        # It may have applied some migrations, and those are never reverted automatically.
        message = (
            f"{detail}; the Deployment keeps {keeps}. The database may be partly migrated: "
            f"{_way_back(rollout)}"
        )
        self._set(migrations_ran=True)
        self._fail("MigrationsFailed", message, CHECK_MIGRATIONS)

    def _enter_deploy(self) -> None:
        self._enter(Gate.DEPLOY, f"rolling out {self.rollout.image}")  # type: ignore[union-attr]
        self._notice("Normal", "RollingOut", f"the Deployment gets {self.rollout.image}")  # type: ignore[union-attr]

    def _deploy(self) -> None:
        desired, rollout = self.desired, self.rollout
        assert rollout is not None
        live = self.seen.deployment
        ours = live is not None and live.key == rollout.key
        if ours and live is not None and live.complete:
            # Nothing to roll back to, or a known-good revision: not verified.
            unverified = self.stable is None or rollout.manual
            if unverified or (desired.verify.total_seconds() <= 0 and not desired.smoke):
                self._succeed()
            else:
                self._enter(
                    Gate.VERIFY,
                    f"verifying {rollout.image} for {_seconds(desired.verify)}",
                )
                self._set(verify=VerifyStatus(started_at=self.now))
                self._notice(
                    "Normal",
                    "Verifying",
                    f"{rollout.image} is rolled out; /health must stay ok for "
                    f"{_seconds(desired.verify)}",
                )
            return
        started = rollout.gate_started_at or rollout.started_at
        exceeded = ours and live is not None and live.deadline_exceeded
        if exceeded or self.now - started > desired.progress_deadline:
            summary = live.summary if live is not None else "no Deployment"
            self._not_good(
                "ProgressDeadlineExceeded",
                f"the Deployment did not finish rolling out {rollout.image} within "
                f"{_seconds(desired.progress_deadline)} ({summary})",
            )

    def _verify(self) -> None:
        desired, rollout = self.desired, self.rollout
        assert rollout is not None and rollout.verify is not None
        verify = rollout.verify
        probe = self.seen.probe
        if probe is not None:
            ok = probe.state is HealthState.OK
            verify = verify.model_copy(
                update={
                    "probes": verify.probes + 1,
                    "failures": verify.failures + (0 if ok else 1),
                    "successes": verify.successes + 1 if ok else 0,
                    "last_probe": f"{probe.state.value}: {probe.message}",
                }
            )
            if verify.paused:
                resume = ok
                if not ok:
                    triage: TriageView = self._require(self.seen.triage, Need.TRIAGE)
                    resume = triage.culprit is None
                if resume:
                    # The dependency is back: the window starts over, this probe its first.
                    verify = VerifyStatus(
                        started_at=self.now,
                        probes=1,
                        failures=0 if ok else 1,
                        successes=1 if ok else 0,
                        smoke=verify.smoke,
                        smoke_passed=verify.smoke_passed,
                        last_probe=verify.last_probe,
                    )
                    self._set(
                        held=None,
                        reason="Verify",
                        message=f"the dependencies are back: verifying {rollout.image} again",
                    )
                    self._notice("Normal", "VerificationResumed", self.rollout.message)  # type: ignore[union-attr]
            self._set(verify=verify)
        if verify.paused:
            return
        if verify.failures >= desired.failure_threshold:
            self._not_good(
                "VerificationFailed",
                f"{verify.failures} of {verify.probes} probes were not ok during verification "
                f"(failureThreshold {desired.failure_threshold}); the last: {verify.last_probe}",
            )
            return
        if desired.smoke and verify.smoke_passed is None and verify.successes >= 1:
            smoke: SmokeView = self._require(self.seen.smoke, Need.SMOKE)
            verify = verify.model_copy(
                update={"smoke": smoke.message, "smoke_passed": smoke.passed}
            )
            self._set(verify=verify)
            if not smoke.passed:
                self._not_good("SmokeFailed", f"smoke requests failed: {smoke.message}")
                return
        window_over = self.now - verify.started_at >= desired.verify
        if window_over and verify.successes >= 1 and (not desired.smoke or verify.smoke_passed):
            self._succeed()

    # -- outcomes --

    def _succeed(self) -> None:
        rollout = self.rollout
        assert rollout is not None
        self.stable = Stable(rollout.revision, rollout.image, rollout.key, rollout.template)
        if rollout.manual:
            message = f"revision {rollout.revision} ({rollout.image}) runs, as spec.rollbackTo asks"
            self._set(
                result=RolloutResult.ROLLED_BACK,
                reason="ManualRollback",
                message=message,
                finished_at=self.now,
                held=None,
            )
            self._notice("Normal", "RolledBack", message)
            return
        verified = (
            f", verified for {_seconds(self.desired.verify)}" if rollout.verify is not None else ""
        )
        if rollout.revision == 1 or rollout.from_template is None:
            verified = " (the first revision: nothing to verify against)"
        message = f"revision {rollout.revision} ({rollout.image}) is rolled out{verified}"
        self._set(
            result=RolloutResult.SUCCEEDED,
            reason="RolloutSucceeded",
            message=message,
            finished_at=self.now,
            held=None,
        )
        self.failed = None
        self._record(self.rollout)  # type: ignore[arg-type]
        self._notice("Normal", "RolloutSucceeded", message)

    def _fail(self, reason: str, message: str, check: str) -> None:
        self._set(result=RolloutResult.FAILED, reason=reason, message=message, finished_at=self.now)
        rollout = self.rollout
        assert rollout is not None
        if not rollout.manual:
            self._record(rollout)
        self._notice("Warning", reason, message, Severity.CRITICAL, check)

    def _not_good(self, reason: str, message: str) -> None:
        """Verification failed or the deadline passed: roll back if that can help."""
        desired, rollout = self.desired, self.rollout
        assert rollout is not None
        triage: TriageView = self._require(self.seen.triage, Need.TRIAGE)
        if triage.culprit is not None:
            held = (
                f"{message}; not rolled back: {triage.summary}. An older image would not fix "
                f"that; {rollout.image} stays and verification waits for {triage.culprit}"
            )
            if rollout.verify is not None and rollout.gate is Gate.VERIFY:
                self._set(verify=rollout.verify.model_copy(update={"paused": True}))
            first = rollout.held is None
            self._set(held=held, reason="RollbackWouldNotHelp", message=held)
            if first:
                self._notice(
                    "Warning", "RollbackSkipped", held, Severity.WARNING, CHECK_VERIFICATION
                )
            return
        if rollout.manual or not desired.auto_rollback or self.stable is None:
            if rollout.manual:
                why = "this was a rollback already"
            elif not desired.auto_rollback:
                why = "spec.rollout.autoRollback is false"
            else:
                why = "there is no earlier revision to roll back to"
            self.failed = Failed(rollout.image, rollout.generation, rollout.key)
            self._fail(reason, f"{message}; not rolled back: {why}", CHECK_ROLLBACK)
            return
        stable = self.stable
        text = (
            f"{message}; rolled back from {rollout.image} to revision {stable.revision} "
            f"({stable.image}).{_migrations_note(rollout)}"
        )
        self._set(
            result=RolloutResult.ROLLED_BACK,
            reason=reason,
            message=text,
            finished_at=self.now,
            held=None,
        )
        self.failed = Failed(rollout.image, rollout.generation, rollout.key)
        self._record(self.rollout)  # type: ignore[arg-type]
        self._notice("Warning", "RolledBack", text, Severity.CRITICAL, CHECK_ROLLBACK)


def advance(desired: Desired, book: Book, seen: Observed) -> Step:
    """The next state and actions; `need` set (and the book unchanged) when input is missing."""
    return _Machine(desired, book, seen).run()
