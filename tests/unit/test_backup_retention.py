"""Retention: which of a schedule's Backups are deleted."""

from __future__ import annotations

import datetime
import zoneinfo

from hypothesis import given
from hypothesis import strategies as st

from orion_operator.backup.retention import (
    BackupRecord,
    RetentionPolicy,
    backups_to_prune,
    parse_age,
)

UTC = zoneinfo.ZoneInfo("UTC")
NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def daily(days: int, phase: str = "Completed") -> list[BackupRecord]:
    """One Backup a day at 02:00, the newest yesterday."""
    return [
        BackupRecord(f"b{n:02d}", phase, NOW.replace(hour=2) - datetime.timedelta(days=n))
        for n in range(1, days + 1)
    ]


def test_no_rules_keep_everything():
    assert backups_to_prune(daily(30), RetentionPolicy(), NOW, UTC) == []


def test_keep_last_deletes_the_older_ones_oldest_first():
    assert backups_to_prune(daily(5), RetentionPolicy(keep_last=2), NOW, UTC) == [
        "b05",
        "b04",
        "b03",
    ]


def test_keep_daily_keeps_the_newest_of_each_day():
    early = NOW.replace(hour=1) - datetime.timedelta(days=1)
    records = [*daily(4), BackupRecord("b01-early", "Completed", early)]
    pruned = backups_to_prune(records, RetentionPolicy(keep_daily=2), NOW, UTC)
    assert sorted(pruned) == ["b01-early", "b03", "b04"]


def test_keep_weekly_keeps_the_newest_of_each_iso_week():
    pruned = backups_to_prune(daily(21), RetentionPolicy(keep_weekly=2), NOW, UTC)
    kept = {r.name for r in daily(21)} - set(pruned)
    # 2026-11-28 is a Saturday: b01 (yesterday) is this week's newest, b06 (Sunday) last week's.
    assert kept == {"b01", "b06"}


def test_rules_are_a_union_and_max_age_caps_them():
    policy = RetentionPolicy(keep_last=1, keep_weekly=4, max_age=datetime.timedelta(days=10))
    kept = {r.name for r in daily(30)} - set(backups_to_prune(daily(30), policy, NOW, UTC))
    assert kept == {"b01", "b06"}  # weekly ones older than 10 days are gone


def test_the_newest_completed_backup_survives_any_policy():
    records = daily(3)
    policy = RetentionPolicy(keep_last=0, max_age=datetime.timedelta(hours=1))
    assert "b01" not in backups_to_prune(records, policy, NOW, UTC)


def test_running_ones_are_never_pruned_and_old_failures_are():
    records = [
        *daily(3),
        BackupRecord("running", "Running", NOW - datetime.timedelta(days=9)),
        BackupRecord("pending", None, NOW),
        BackupRecord("failed-old", "Failed", NOW - datetime.timedelta(days=5)),
        BackupRecord("failed-new", "Failed", NOW - datetime.timedelta(minutes=5)),
    ]
    pruned = backups_to_prune(records, RetentionPolicy(keep_last=1), NOW, UTC)
    assert "running" not in pruned and "pending" not in pruned
    assert "failed-old" in pruned and "failed-new" not in pruned


def test_days_follow_the_schedules_time_zone():
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    # 23:30 UTC on the 26th is already the 27th in Madrid: same local day as 10:00 UTC the 27th.
    records = [
        BackupRecord(
            "late", "Completed", datetime.datetime(2026, 11, 26, 23, 30, tzinfo=datetime.UTC)
        ),
        BackupRecord(
            "day", "Completed", datetime.datetime(2026, 11, 27, 10, 0, tzinfo=datetime.UTC)
        ),
    ]
    assert backups_to_prune(records, RetentionPolicy(keep_daily=5), NOW, madrid) == ["late"]
    assert backups_to_prune(records, RetentionPolicy(keep_daily=5), NOW, UTC) == []


def test_ages_parse():
    assert parse_age("30d") == datetime.timedelta(days=30)
    assert parse_age("1w2d12h") == datetime.timedelta(days=9, hours=12)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Completed", "Failed", "Running", None]),
            st.integers(min_value=0, max_value=60 * 24 * 60),
        ),
        max_size=40,
    ),
    st.one_of(st.none(), st.integers(0, 5)),
    st.one_of(st.none(), st.integers(0, 5)),
    st.one_of(st.none(), st.integers(0, 5)),
    st.one_of(st.none(), st.integers(1, 60)),
)
def test_retention_never_deletes_the_newest_good_backup_or_a_running_one(
    backups, keep_last, keep_daily, keep_weekly, max_age_days
):
    records = [
        BackupRecord(f"b{n}", phase, NOW - datetime.timedelta(minutes=minutes))
        for n, (phase, minutes) in enumerate(backups)
    ]
    policy = RetentionPolicy(
        keep_last,
        keep_daily,
        keep_weekly,
        datetime.timedelta(days=max_age_days) if max_age_days else None,
    )
    pruned = set(backups_to_prune(records, policy, NOW, UTC))
    completed = [r for r in records if r.phase == "Completed"]
    if completed:
        newest_time = max(r.time for r in completed)
        assert any(r.time == newest_time and r.name not in pruned for r in completed)
    assert not pruned & {r.name for r in records if r.phase in ("Running", None)}
    if keep_last:
        # Ties in time go to the later name, as retention orders them.
        newest = sorted(completed, key=lambda r: (r.time, r.name), reverse=True)[:keep_last]
        young = [r for r in newest if not max_age_days or NOW - r.time <= policy.max_age]
        assert not pruned & {r.name for r in young}


def test_backups_completed_in_the_same_second_keep_the_later_name():
    same = NOW - datetime.timedelta(hours=1)
    records = [
        BackupRecord("nightly-202611260200", "Completed", same),
        BackupRecord("nightly-202611270200", "Completed", same),
        BackupRecord("nightly-202611250200", "Completed", same),
    ]
    pruned = backups_to_prune(records, RetentionPolicy(keep_last=1), NOW, UTC)
    assert pruned == ["nightly-202611250200", "nightly-202611260200"]
