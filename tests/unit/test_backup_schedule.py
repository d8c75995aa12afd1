"""Schedules: the cron pattern in the CRD, fire times in a time zone, missed runs, names."""

from __future__ import annotations

import datetime
import re

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orion_operator.api.backupschedule import CRON_PATTERN, MAX_BACKUP_NAME, MAX_SCHEDULE_NAME
from orion_operator.backup.schedule import (
    ScheduleError,
    backup_name,
    due_fire_time,
    parse_schedule,
    tenant_schedule_name,
)

UTC = datetime.UTC
CRON = re.compile(CRON_PATTERN)


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


VALID = [
    "* * * * *",
    "0 2 * * *",
    "*/15 * * * *",
    "0 3 * * 1-5",
    "30 4 1,15 * *",
    "0 0 1 jan *",
    "0 12 * * SUN",
    "5 0-23/2 * * *",
    "59 23 31 12 7",
    "0 0 * * 0",
    "@daily",
    "@hourly",
    "@weekly",
    "1,2,3 * * * *",
]
INVALID = [
    "61 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "* * *",
    "* * * * * *",
    "every day",
    "@every 5m",
    "*/0 * * * *",
    "",
    "0 2 * * * ; rm -rf /",
]


@pytest.mark.parametrize("expression", VALID)
def test_the_crd_pattern_accepts_cron_the_library_accepts(expression: str):
    assert CRON.match(expression), expression
    assert croniter.is_valid(expression)


@pytest.mark.parametrize("expression", INVALID)
def test_the_crd_pattern_rejects_broken_cron(expression: str):
    assert not CRON.match(expression), expression


FIELD_VALUES = [range(60), range(24), range(1, 32), range(1, 13), range(8)]


@st.composite
def cron_fields(draw: st.DrawFn) -> str:
    fields = []
    for values in FIELD_VALUES:
        low = draw(st.sampled_from(list(values)))
        high = draw(st.sampled_from([v for v in values if v >= low]))
        form = draw(st.sampled_from(["*", "n", "range", "step", "list"]))
        fields.append(
            {
                "*": "*",
                "n": f"{low}",
                "range": f"{low}-{high}",
                "step": f"*/{draw(st.integers(1, 30))}",
                "list": f"{low},{high}",
            }[form]
        )
    return " ".join(fields)


@given(cron_fields())
def test_anything_the_pattern_accepts_the_library_can_schedule(expression: str):
    assert CRON.match(expression)
    assert croniter.is_valid(expression)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(CRON_PATTERN, fullmatch=True))
def test_whatever_the_crd_pattern_lets_through_the_library_accepts(expression: str):
    # Strings drawn from the pattern itself: names, ranges either way round, steps, lists.
    assert croniter.is_valid(expression), expression
    try:
        parse_schedule(expression, "Europe/Madrid")
    except ScheduleError as error:
        # The one thing a pattern cannot know: a date that never comes, such as 30 February.
        assert error.field == "spec.schedule" and "never fires" in error.message


def test_fire_times_follow_the_time_zone_across_daylight_saving():
    schedule = parse_schedule("0 2 * * *", "Europe/Madrid")
    # 02:00 in Madrid is 01:00 UTC in winter and 00:00 UTC in summer.
    assert schedule.next_after(at("2026-01-10T12:00:00")) == at("2026-01-11T01:00:00")
    assert schedule.next_after(at("2026-07-10T12:00:00")) == at("2026-07-11T00:00:00")


def test_bad_time_zone_and_cron_name_their_field():
    with pytest.raises(ScheduleError) as zone:
        parse_schedule("0 2 * * *", "Mars/Olympus")
    assert zone.value.field == "spec.timeZone"
    with pytest.raises(ScheduleError) as cron:
        parse_schedule("0 0 31 2 *", "UTC")  # passes the pattern; 31 February never comes
    assert cron.value.field == "spec.schedule" and "never fires" in cron.value.message


def test_a_passed_fire_time_is_due_once():
    schedule = parse_schedule("0 * * * *", "UTC")
    created = at("2026-11-28T09:10:00")
    assert due_fire_time(schedule, at("2026-11-28T09:59:59"), None, created, None) is None
    fire = due_fire_time(schedule, at("2026-11-28T10:00:05"), None, created, None)
    assert fire == at("2026-11-28T10:00:00")
    assert due_fire_time(schedule, at("2026-11-28T10:00:30"), fire, created, None) is None


def test_after_downtime_only_the_latest_missed_run_is_taken():
    schedule = parse_schedule("*/10 * * * *", "UTC")
    last = at("2026-11-28T08:00:00")
    # Down from 08:05 to 09:03: 08:10 ... 09:00 were missed; one run, for 09:00.
    assert due_fire_time(schedule, at("2026-11-28T09:03:00"), last, last, None) == at(
        "2026-11-28T09:00:00"
    )


def test_a_starting_deadline_skips_runs_missed_by_longer():
    schedule = parse_schedule("0 * * * *", "UTC")
    last = at("2026-11-28T08:00:00")
    now = at("2026-11-28T09:05:00")
    assert due_fire_time(schedule, now, last, last, starting_deadline_seconds=60) is None
    assert due_fire_time(schedule, now, last, last, starting_deadline_seconds=600) == at(
        "2026-11-28T09:00:00"
    )


def test_backup_names_are_the_fire_time_in_utc():
    fire = datetime.datetime(
        2026, 3, 29, 3, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert backup_name("nightly", fire) == "nightly-202603290130"


def test_the_longest_schedule_name_still_gives_backup_names_that_fit_a_label():
    fire = at("2026-12-31T23:59:00")
    assert len(backup_name("s" * MAX_SCHEDULE_NAME, fire)) == MAX_BACKUP_NAME == 63


def test_tenant_schedule_names_fit_the_schedule_name_rule():
    assert tenant_schedule_name("acme") == "acme-backup"
    assert tenant_schedule_name("t" * 43) == "t" * 43 + "-backup"
    long_name = "t" * 80
    assert len(tenant_schedule_name(long_name)) <= MAX_SCHEDULE_NAME
    assert tenant_schedule_name(long_name).endswith("-backup")
    assert tenant_schedule_name(long_name) != tenant_schedule_name(long_name[:-1] + "u")
