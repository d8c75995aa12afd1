"""One health cycle of an ApiDeployment: probe, triage when needed, advance the alert states.

Pure orchestration over injected I/O (the HTTP session, the triage function), so it is tested
without Kubernetes; the handler posts the Events, sends the alerts and writes the status.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import aiohttp

from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.alerts.state import AlertPolicy, CheckState, Observation, advance
from orion_operator.health.contract import HealthReport, HealthState, Problem
from orion_operator.health.probe import probe_health
from orion_operator.redaction import redact, secrets_of_url

# Runs the runbook's incident checks; returns (summary, culprit, problems found).
Triage = Callable[[], Awaitable["TriageOutcome"]]


@dataclass(frozen=True)
class TriageOutcome:
    summary: str
    culprit: str | None
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class HealthCycle:
    report: HealthReport
    latency_seconds: float
    triage: TriageOutcome | None
    alert_states: dict[str, CheckState]
    alerts: tuple[Alert, ...]


def _alert_id(subject_uid: str, check: str, transition: Transition, now: datetime.datetime) -> str:
    # Stable for one notification (webhook-id): receivers can de-duplicate retries.
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"{subject_uid}/{check}/{transition}/{now.isoformat()}")
    )


def _alert(
    subject: ObjectRef,
    subject_uid: str,
    check: str,
    state: CheckState,
    transition: Transition,
    now: datetime.datetime,
    context: str,
) -> Alert:
    if transition is Transition.RESOLVED:
        severity, reason = Severity.INFO, "Recovered"
        title = f"Recovered: {check} ({subject})"
        message = f"{check} is healthy again after: {state.message or state.reason}"
    else:
        severity, reason = state.severity or Severity.WARNING, state.reason or "HealthDegraded"
        again = " (still failing)" if transition is Transition.REPEAT else ""
        title = f"{reason}: {subject}{again}"
        message = state.message or reason
    details = {"check": check, "context": context}
    if state.since is not None:
        details["since"] = state.since.isoformat()
    return Alert(
        id=_alert_id(subject_uid, check, transition, now),
        check=check,
        reason=reason,
        severity=severity,
        transition=transition,
        title=title,
        message=message,
        subject=subject,
        occurred_at=now,
        details=details,
    )


async def run_health_cycle(
    *,
    session: aiohttp.ClientSession,
    url: str,
    timeout_seconds: float,
    queue_failed_threshold: int | None,
    triage: Triage,
    prior: Mapping[str, CheckState],
    policy: AlertPolicy,
    subject: ObjectRef,
    subject_uid: str,
    now: datetime.datetime,
) -> HealthCycle:
    report, latency = await probe_health(
        session, url, timeout_seconds=timeout_seconds, queue_failed_threshold=queue_failed_threshold
    )
    # Error text from the HTTP client can quote the URL, credentials and all.
    report = replace(report, message=redact(report.message, secrets_of_url(url)))
    problems: dict[str, Problem] = {p.check: p for p in report.problems}

    outcome: TriageOutcome | None = None
    if report.state in (HealthState.ERROR, HealthState.DOWN):
        outcome = await triage()
        for problem in outcome.problems:
            problems.setdefault(problem.check, problem)

    states: dict[str, CheckState] = {}
    alerts: list[Alert] = []
    context = report.message if outcome is None else f"{report.message}; triage: {outcome.summary}"
    for check in sorted(set(problems) | set(prior)):
        found = problems.get(check)
        seen = (
            Observation(True, found.severity, found.reason, redact(found.message))
            if found
            else Observation(False)
        )
        state, transition = advance(prior.get(check, CheckState()), seen, now, policy)
        if state != CheckState(successes=state.successes) or state.firing:
            states[check] = state
        if transition is not None:
            alerts.append(_alert(subject, subject_uid, check, state, transition, now, context))
    return HealthCycle(
        report=report,
        latency_seconds=latency,
        triage=outcome,
        alert_states=states,
        alerts=tuple(alerts),
    )
