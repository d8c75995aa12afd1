"""Which of a schedule's Backups retention deletes (no Kubernetes here).

Kept: the union of keepLast, keepDaily and keepWeekly over Completed Backups; then anything older
than maxAge goes whatever keeps it. Never deleted: the newest Completed Backup (retention must
never leave no good backup) and Backups still Pending or Running. Failed Backups older than the
newest Completed one are deleted; newer ones stay, to be looked at.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

_AGE_PART = re.compile(r"([0-9]+)(w|d|h|m)")
_AGE_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60}


def parse_age(text: str) -> datetime.timedelta:
    """30d, 12h, 2w, 1d12h (the maxAge field's pattern guarantees the shape)."""
    return datetime.timedelta(
        seconds=sum(int(n) * _AGE_UNIT[unit] for n, unit in _AGE_PART.findall(text))
    )


@dataclass(frozen=True)
class BackupRecord:
    name: str
    phase: str | None  # Pending, Running, Completed, Failed, or None before the first status
    time: datetime.datetime  # completion when finished, else creation


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    max_age: datetime.timedelta | None = None

    @property
    def keeps_everything(self) -> bool:
        return (
            self.keep_last is None
            and self.keep_daily is None
            and self.keep_weekly is None
            and self.max_age is None
        )


def _newest_per_period(
    completed: list[BackupRecord], count: int, period: Callable[[BackupRecord], Hashable]
) -> set[str]:
    """The newest Backup of each period, for the `count` most recent periods that have one."""
    kept: dict[Hashable, str] = {}
    for record in completed:  # newest first
        key = period(record)
        if key not in kept:
            if len(kept) == count:
                break
            kept[key] = record.name
    return set(kept.values())


def backups_to_prune(
    records: Iterable[BackupRecord],
    policy: RetentionPolicy,
    now: datetime.datetime,
    zone: zoneinfo.ZoneInfo,
) -> list[str]:
    """Names to delete, oldest first."""
    if policy.keeps_everything:
        return []
    # Completion times have one-second precision: on a tie the later name (a later fire time, for
    # a schedule's Backups) counts as newer, so the choice never depends on listing order.
    ordered = sorted(records, key=lambda r: (r.time, r.name), reverse=True)
    completed = [r for r in ordered if r.phase == "Completed"]
    if not completed:
        return []
    newest = completed[0]

    keep: set[str] = set()
    uses_count_rules = any(
        rule is not None for rule in (policy.keep_last, policy.keep_daily, policy.keep_weekly)
    )
    if uses_count_rules:
        if policy.keep_last:
            keep.update(r.name for r in completed[: policy.keep_last])
        if policy.keep_daily:
            keep |= _newest_per_period(
                completed, policy.keep_daily, lambda r: r.time.astimezone(zone).date()
            )
        if policy.keep_weekly:
            keep |= _newest_per_period(
                completed,
                policy.keep_weekly,
                lambda r: r.time.astimezone(zone).isocalendar()[:2],
            )
    else:
        keep.update(r.name for r in completed)  # only maxAge prunes
    if policy.max_age is not None:
        keep = {r.name for r in completed if r.name in keep and now - r.time <= policy.max_age}
    keep.add(newest.name)

    prune = [r.name for r in completed if r.name not in keep]
    prune += [r.name for r in ordered if r.phase == "Failed" and r.time < newest.time]
    by_time = {r.name: r.time for r in ordered}
    return sorted(prune, key=lambda name: (by_time[name], name))
