"""The runbook's daily checklist, computed from Orion objects and Events as plain dicts.

Every function here takes the objects as the API server returns them (camelCase dicts) and the
time to judge them at, so the same input always gives the same lines.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orion_operator import API_GROUP
from orion_operator.alerts.model import ObjectRef

# The Event reasons the operator posts only for critical alerts (alerts/model.py Severity):
# the health probe's ApiDown and DatabaseDown, a failed Backup, and a rollout that failed or
# was rolled back. Warnings (RedisDown, QueueDown, IntegrityViolation...) are not here.
CRITICAL_ALERT_REASONS = frozenset(
    {
        "ApiDown",
        "DatabaseDown",
        "BackupFailed",
        "RolledBack",
        "MigrationsFailed",
        "BackupNameTaken",
        "ProgressDeadlineExceeded",
        "VerificationFailed",
        "SmokeFailed",
    }
)
SCHEDULE_LABEL = "orion.io/backup-schedule"
DEFAULT_MAX_SHARE = 0.8  # ApiDeployment spec.databaseConnections.maxShare's default
DEFAULT_HEALTH_INTERVAL_SECONDS = 30  # spec.healthCheck.intervalSeconds's default


class Item(StrEnum):
    """The runbook's "Checklist de Operación Diaria", in its order (stable JSON keys)."""

    HEALTH = "health"
    CRITICAL_ALERTS = "criticalAlerts"
    BACKUPS = "backups"
    HTTP_5XX = "http5xx"
    DISK_SPACE = "diskSpace"
    DATABASE_CONNECTIONS = "databaseConnections"


ITEM_TITLES = {
    Item.HEALTH: "Health check responding OK",
    Item.CRITICAL_ALERTS: "No critical alerts",
    Item.BACKUPS: "Backups running correctly",
    Item.HTTP_5XX: "No 5xx errors",
    Item.DISK_SPACE: "Enough disk space on backup volumes",
    Item.DATABASE_CONNECTIONS: "Database connections within limits",
}


class LineStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    # Neither green nor red: nothing measures it (yet), so nothing can be claimed.
    NOT_CONFIGURED = "notConfigured"
    UNKNOWN = "unknown"


# What a line is about: the same reference alerts carry.
Subject = ObjectRef


@dataclass(frozen=True)
class Line:
    item: Item
    status: LineStatus
    reason: str
    subject: Subject | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    backup_max_age: datetime.timedelta = datetime.timedelta(hours=26)  # the chart's alert rule
    min_free_percent: float = 20.0  # the runbook: "> 20% libre"
    alert_window: datetime.timedelta = datetime.timedelta(hours=24)
    # A health result older than this (or 3 probe intervals, if longer) is not current.
    health_max_age: datetime.timedelta = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class ClusterState:
    """What the checklist reads, as lists of object dicts."""

    api_deployments: Sequence[Mapping[str, Any]] = ()
    backup_schedules: Sequence[Mapping[str, Any]] = ()
    backups: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Checklist:
    lines: tuple[Line, ...]
    generated_at: datetime.datetime

    @property
    def ok(self) -> bool:
        """True unless a line is red; lines nothing measures do not fail the checklist."""
        return all(line.status is not LineStatus.FAIL for line in self.lines)


def parse_time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def format_age(age: datetime.timedelta) -> str:
    """`3d4h`, `5h12m`, `7m`, `40s`: the way kubectl prints ages."""
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def format_hours(span: datetime.timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def _subject(obj: Mapping[str, Any], kind: str) -> Subject:
    meta = obj.get("metadata") or {}
    return Subject(kind, str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in _status(obj).get("conditions") or [] if c.get("type") == type_), None)


def _sorted(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return sorted(
        objects, key=lambda obj: (_subject(obj, kind).namespace, _subject(obj, kind).name)
    )


def health_line(apid: Mapping[str, Any], now: datetime.datetime, thresholds: Thresholds) -> Line:
    """Green when the `Healthy` condition is True, the phase Healthy and the probe recent."""
    subject = _subject(apid, "ApiDeployment")
    status = _status(apid)
    phase = status.get("phase") or "unknown"
    health = status.get("health") or {}
    healthy = _condition(apid, "Healthy")
    details: dict[str, Any] = {"phase": phase, "health": health.get("state")}
    if healthy is None:
        reason = f"phase {phase}: the operator has not probed /health yet"
        return Line(Item.HEALTH, LineStatus.FAIL, reason, subject, details)
    checked_at = parse_time(health.get("checkedAt")) or parse_time(
        healthy.get("lastTransitionTime")
    )
    if healthy.get("status") != "True" or phase != "Healthy":
        why = healthy.get("message") or healthy.get("reason") or "not healthy"
        reason = f"phase {phase}, health {health.get('state') or 'unknown'}: {why}"
        return Line(Item.HEALTH, LineStatus.FAIL, reason, subject, details)
    interval = (
        (apid.get("spec") or {})
        .get("healthCheck", {})
        .get("intervalSeconds", DEFAULT_HEALTH_INTERVAL_SECONDS)
    )
    max_age = max(thresholds.health_max_age, datetime.timedelta(seconds=3 * int(interval)))
    if checked_at is None or now - checked_at > max_age:
        seen = f"{format_age(now - checked_at)} ago" if checked_at else "at an unknown time"
        reason = (
            f"the last probe was {seen} (older than {format_age(max_age)}): "
            "is the operator running?"
        )
        return Line(Item.HEALTH, LineStatus.FAIL, reason, subject, details)
    reason = f"Healthy, /health ok {format_age(now - checked_at)} ago"
    return Line(Item.HEALTH, LineStatus.OK, reason, subject, details)


def _event_time(event: Mapping[str, Any]) -> datetime.datetime | None:
    return (
        parse_time(event.get("lastTimestamp"))
        or parse_time(event.get("eventTime"))
        or parse_time(event.get("firstTimestamp"))
        or parse_time((event.get("metadata") or {}).get("creationTimestamp"))
    )


def _is_critical(event: Mapping[str, Any]) -> bool:
    involved = event.get("involvedObject") or {}
    return (
        event.get("type") == "Warning"
        and event.get("reason") in CRITICAL_ALERT_REASONS
        and str(involved.get("apiVersion", "")).startswith(f"{API_GROUP}/")
    )


def critical_alerts_line(
    events: Iterable[Mapping[str, Any]],
    api_deployments: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
    thresholds: Thresholds,
) -> Line:
    """Red when a critical alert's Event falls in the window, or one is firing right now."""
    since = now - thresholds.alert_window
    found: list[dict[str, Any]] = []
    for event in events:
        moment = _event_time(event)
        if not _is_critical(event) or moment is None or moment < since:
            continue
        involved = event.get("involvedObject") or {}
        found.append(
            {
                "reason": event["reason"],
                "object": {
                    "kind": involved.get("kind"),
                    "namespace": involved.get("namespace"),
                    "name": involved.get("name"),
                },
                "count": int(event.get("count") or 1),
                "lastSeen": moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    # The alert state in status outlives Events (the API server drops them after --event-ttl).
    firing = []
    for apid in api_deployments:
        for check, state in sorted((_status(apid).get("alerts") or {}).items()):
            if state and state.get("firing") and state.get("severity") == "critical":
                firing.append(
                    f"{state.get('reason') or check} on {_subject(apid, 'ApiDeployment')}"
                )
    found.sort(key=lambda alert: alert["lastSeen"], reverse=True)
    window = format_hours(thresholds.alert_window)
    details = {"windowHours": thresholds.alert_window.total_seconds() / 3600, "alerts": found}
    details["firing"] = firing
    if not found and not firing:
        return Line(
            Item.CRITICAL_ALERTS,
            LineStatus.OK,
            f"no critical alert Event in the last {window} and none firing",
            details=details,
        )
    parts = []
    if firing:
        parts.append("firing now: " + ", ".join(firing))
    if found:
        shown = [
            f"{a['reason']} on {a['object']['kind']} {a['object']['namespace']}/"
            f"{a['object']['name']} ({format_age(now - parse_time(a['lastSeen']))} ago)"  # type: ignore[operator]
            for a in found[:3]
        ]
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        parts.append(f"{len(found)} in the last {window}: " + ", ".join(shown) + more)
    return Line(Item.CRITICAL_ALERTS, LineStatus.FAIL, "; ".join(parts), details=details)


def _last_success(
    schedule: Mapping[str, Any], backups: Iterable[Mapping[str, Any]]
) -> tuple[datetime.datetime | None, str | None]:
    """The newest finish time of a Completed Backup of this schedule, and that Backup's name."""
    subject = _subject(schedule, "BackupSchedule")
    best: tuple[datetime.datetime | None, str | None] = (
        parse_time(_status(schedule).get("lastSuccessfulTime")),
        None,
    )
    for backup in backups:
        meta = backup.get("metadata") or {}
        if (
            (meta.get("labels") or {}).get(SCHEDULE_LABEL) != subject.name
            or (meta.get("namespace") or "default") != subject.namespace
            or _status(backup).get("phase") != "Completed"
        ):
            continue
        finished = parse_time(_status(backup).get("completedAt"))
        if finished is not None and (best[0] is None or finished >= best[0]):
            best = (finished, str(meta.get("name")))
    return best


def backup_line(
    schedule: Mapping[str, Any],
    backups: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
    thresholds: Thresholds,
) -> Line:
    """Green when this schedule's newest Completed Backup is younger than the threshold."""
    subject = _subject(schedule, "BackupSchedule")
    finished, backup_name = _last_success(schedule, backups)
    limit = format_hours(thresholds.backup_max_age)
    suspended = (
        " (the schedule is suspended)" if (schedule.get("spec") or {}).get("suspend") else ""
    )
    details: dict[str, Any] = {
        "lastSuccessfulTime": finished.strftime("%Y-%m-%dT%H:%M:%SZ") if finished else None,
        "maxAgeHours": thresholds.backup_max_age.total_seconds() / 3600,
    }
    if finished is None:
        reason = f"no Backup of this schedule has completed yet{suspended}"
        return Line(Item.BACKUPS, LineStatus.FAIL, reason, subject, details)
    age = now - finished
    details["ageSeconds"] = int(age.total_seconds())
    which = f" ({backup_name})" if backup_name else ""
    if age > thresholds.backup_max_age:
        reason = f"the last successful backup{which} finished {format_age(age)} ago, over {limit}"
        return Line(Item.BACKUPS, LineStatus.FAIL, reason + suspended, subject, details)
    reason = f"the last successful backup{which} finished {format_age(age)} ago (limit {limit})"
    return Line(Item.BACKUPS, LineStatus.OK, reason + suspended, subject, details)


@dataclass(frozen=True, order=True)
class _Volume:
    namespace: str  # "" for a plain path: the operator's own filesystem, shared by all
    claim: str
    path: str

    @property
    def subject(self) -> Subject | None:
        return Subject("PersistentVolumeClaim", self.namespace, self.claim) if self.claim else None


def _volume_of(backup: Mapping[str, Any]) -> _Volume | None:
    """The volume a Backup wrote to, or None for S3."""
    storage = (backup.get("spec") or {}).get("storage") or {}
    if storage.get("s3"):
        return None
    volume = storage.get("volume") or {}
    path = str(volume.get("path") or "./backups")
    claim = str(volume.get("claimName") or "")
    return _Volume(_subject(backup, "Backup").namespace if claim else "", claim, path)


def disk_space_lines(
    backups: Iterable[Mapping[str, Any]], now: datetime.datetime, thresholds: Thresholds
) -> list[Line]:
    """One line per backup volume, from the newest free-space measurement a Backup recorded."""
    newest: dict[_Volume, tuple[datetime.datetime, Mapping[str, Any]] | None] = {}
    for backup in backups:
        volume = _volume_of(backup)
        if volume is None:
            continue
        space = _status(backup).get("volumeSpace") or {}
        measured = parse_time(space.get("measuredAt"))
        seen = newest.get(volume)
        if measured is not None and (seen is None or measured > seen[0]):
            newest[volume] = (measured, space)
        else:
            newest.setdefault(volume, None)
    lines = []
    threshold = f"{thresholds.min_free_percent:g}%"
    for volume, measurement in sorted(newest.items(), key=lambda pair: pair[0]):
        details: dict[str, Any] = {
            "path": volume.path,
            "claimName": volume.claim or None,
            "minFreePercent": thresholds.min_free_percent,
        }
        if measurement is None:
            reason = f"{volume.path}: no Backup has recorded its free space yet"
            lines.append(Line(Item.DISK_SPACE, LineStatus.UNKNOWN, reason, volume.subject, details))
            continue
        measured, space = measurement
        percent = float(space.get("freePercent", 0))
        free_gib = int(space.get("freeBytes", 0)) / 2**30
        details |= {
            "freePercent": percent,
            "freeBytes": space.get("freeBytes"),
            "totalBytes": space.get("totalBytes"),
            "measuredAt": space.get("measuredAt"),
        }
        text = (
            f"{volume.path}: {percent:g}% free ({free_gib:.1f} GiB), measured when a backup "
            f"ended {format_age(now - measured)} ago"
        )
        if percent > thresholds.min_free_percent:
            status, text = LineStatus.OK, f"{text}; over {threshold}"
        else:
            status, text = LineStatus.FAIL, f"{text}; not over {threshold}"
        lines.append(Line(Item.DISK_SPACE, status, text, volume.subject, details))
    return lines


def connections_line(apid: Mapping[str, Any]) -> Line:
    """Green while connections in use stay within spec.databaseConnections.maxShare."""
    subject = _subject(apid, "ApiDeployment")
    usage = _status(apid).get("databaseConnections")
    budget = (apid.get("spec") or {}).get("databaseConnections") or {}
    share = float(budget.get("maxShare", DEFAULT_MAX_SHARE))
    if not usage:
        reason = "the operator has not reported pg_stat_activity yet (database unreachable?)"
        return Line(Item.DATABASE_CONNECTIONS, LineStatus.UNKNOWN, reason, subject)
    in_use, maximum = int(usage.get("inUse", 0)), int(usage.get("maxConnections", 0))
    limit = int(share * maximum)
    percent = round(100 * in_use / maximum) if maximum else 0
    details = {"inUse": in_use, "maxConnections": maximum, "limit": limit, "maxShare": share}
    text = f"{in_use} of {maximum} connections in use ({percent}%)"
    if in_use > limit:
        reason = f"{text}, over the limit of {limit} ({share:.0%} of max_connections)"
        return Line(Item.DATABASE_CONNECTIONS, LineStatus.FAIL, reason, subject, details)
    reason = f"{text}, within the limit of {limit} ({share:.0%} of max_connections)"
    return Line(Item.DATABASE_CONNECTIONS, LineStatus.OK, reason, subject, details)


def http_5xx_line(apid: Mapping[str, Any]) -> Line:
    """Nothing reads the API's 5xx count yet: say so rather than guess."""
    reason = "not configured: the operator does not read the API's /metrics/prometheus"
    return Line(Item.HTTP_5XX, LineStatus.NOT_CONFIGURED, reason, _subject(apid, "ApiDeployment"))


def build_checklist(
    state: ClusterState, now: datetime.datetime, thresholds: Thresholds | None = None
) -> Checklist:
    """Every line of the daily checklist, in the runbook's order."""
    thresholds = thresholds or Thresholds()
    apids = _sorted(state.api_deployments, "ApiDeployment")
    schedules = _sorted(state.backup_schedules, "BackupSchedule")
    lines: list[Line] = []
    if apids:
        lines += [health_line(apid, now, thresholds) for apid in apids]
    else:
        lines.append(Line(Item.HEALTH, LineStatus.UNKNOWN, "no ApiDeployment here"))
    lines.append(critical_alerts_line(state.events, apids, now, thresholds))
    if schedules:
        lines += [backup_line(schedule, state.backups, now, thresholds) for schedule in schedules]
    else:
        lines.append(
            Line(Item.BACKUPS, LineStatus.FAIL, "no BackupSchedule: nothing takes backups")
        )
    lines += [http_5xx_line(apid) for apid in apids] or [
        Line(Item.HTTP_5XX, LineStatus.NOT_CONFIGURED, "no ApiDeployment here")
    ]
    space = disk_space_lines(state.backups, now, thresholds)
    lines += space or [
        Line(Item.DISK_SPACE, LineStatus.UNKNOWN, "no Backup writes to a volume (S3 only, or none)")
    ]
    lines += [connections_line(apid) for apid in apids] or [
        Line(Item.DATABASE_CONNECTIONS, LineStatus.UNKNOWN, "no ApiDeployment here")
    ]
    return Checklist(tuple(lines), now)
