"""When a BackupSchedule fires, and what its Backups are called (no Kubernetes here)."""

from __future__ import annotations

import datetime
import hashlib
import zoneinfo
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

from orion_operator.api.backupschedule import MAX_SCHEDULE_NAME

UTC = datetime.UTC


class ScheduleError(ValueError):
    """A schedule the operator cannot use; `field` names the spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    expression: str
    zone: zoneinfo.ZoneInfo

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first fire time strictly after `moment` (UTC)."""
        local = moment.astimezone(self.zone)
        return croniter(self.expression, local).get_next(datetime.datetime).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """The last fire time at or before `moment` (UTC)."""
        # croniter's get_prev is strictly before its start: start a microsecond later.
        local = (moment + datetime.timedelta(microseconds=1)).astimezone(self.zone)
        return croniter(self.expression, local).get_prev(datetime.datetime).astimezone(UTC)


def parse_schedule(expression: str, time_zone: str) -> Schedule:
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("spec.timeZone", f'unknown time zone "{time_zone}"') from None
    if not croniter.is_valid(expression):
        raise ScheduleError("spec.schedule", f'"{expression}" is not a valid cron schedule')
    schedule = Schedule(expression, zone)
    try:
        schedule.next_after(datetime.datetime.now(UTC))
    except CroniterBadDateError:
        # Valid field by field, yet no date matches, such as 31 February.
        raise ScheduleError("spec.schedule", f'"{expression}" never fires') from None
    return schedule


def due_fire_time(
    schedule: Schedule,
    now: datetime.datetime,
    last_handled: datetime.datetime | None,
    created_at: datetime.datetime,
    starting_deadline_seconds: int | None,
) -> datetime.datetime | None:
    """The fire time to act on now, if any: only the latest one, never a burst of missed ones.

    A fire time is due once it has passed, is after the last one handled (or the schedule's
    creation), and, when a starting deadline is set, is no older than it.
    """
    latest = schedule.latest_at_or_before(now)
    if latest <= (last_handled or created_at):
        return None
    if starting_deadline_seconds is not None and (
        (now - latest).total_seconds() > starting_deadline_seconds
    ):
        return None
    return latest


def backup_name(schedule_name: str, fire_time: datetime.datetime) -> str:
    """`<schedule>-<yyyymmddhhmm>` of the fire time in UTC: the same name from any replica."""
    return f"{schedule_name}-{fire_time.astimezone(UTC):%Y%m%d%H%M}"


def tenant_schedule_name(tenant_name: str, limit: int = MAX_SCHEDULE_NAME) -> str:
    """`<tenant>-backup`, shortened with a hash when it would be too long for a schedule."""
    name = f"{tenant_name}-backup"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(tenant_name.encode()).hexdigest()[:8]
    return f"{tenant_name[: limit - 16].rstrip('-.')}-{digest}-backup"
