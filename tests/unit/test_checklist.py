"""The daily checklist's lines, from object dicts as the API server returns them, at a set time."""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.alerts.model import Severity
from orion_operator.backup.run import measure_volume_space
from orion_operator.backup.storage import S3Location, VolumeLocation
from orion_operator.checklist import (
    CRITICAL_ALERT_REASONS,
    ClusterState,
    Item,
    LineStatus,
    Thresholds,
    build_checklist,
    checklist_json,
    render_text,
)
from orion_operator.checklist.lines import (
    backup_line,
    connections_line,
    critical_alerts_line,
    disk_space_lines,
    health_line,
)
from orion_operator.health.contract import classify_health
from orion_operator.health.triage import DependencyCheck, DependencyStatus, TriageResult
from orion_operator.kubectl_plugin import PluginError, load_config

NOW = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC)
DEFAULTS = Thresholds()
MINUTE = datetime.timedelta(minutes=1)
THREE_HOURS = datetime.timedelta(hours=3)


def stamp(ago: datetime.timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def hours(n: float) -> datetime.timedelta:
    return datetime.timedelta(hours=n)


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


def api_deployment(
    name: str = "orion-api",
    *,
    namespace: str = "prod",
    phase: str = "Healthy",
    healthy: str | None = "True",
    health_state: str = "ok",
    message: str = "all services connected",
    probed: datetime.timedelta = MINUTE,
    spec: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    conditions = []
    if healthy is not None:
        conditions.append(
            {
                "type": "Healthy",
                "status": healthy,
                "reason": f"Health{health_state.capitalize()}",
                "message": message,
                "lastTransitionTime": stamp(hours(5)),
            }
        )
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "ApiDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"image": "orion-api:1.0.0"},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "health": {"state": health_state, "message": message, "checkedAt": stamp(probed)},
            **status,
        },
    }


def event(
    reason: str,
    ago: datetime.timedelta,
    *,
    type: str = "Warning",
    kind: str = "ApiDeployment",
    api_version: str = "orion.io/v1alpha1",
    name: str = "orion-api",
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}.1", "namespace": "prod"},
        "type": type,
        "reason": reason,
        "message": f"{reason}: {kind} prod/{name}",
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "namespace": "prod",
            "name": name,
        },
        "firstTimestamp": stamp(ago + minutes(5)),
        "lastTimestamp": stamp(ago),
        "count": 2,
    }


def schedule(
    name: str = "nightly", *, namespace: str = "prod", last_success: str | None = None
) -> dict[str, Any]:
    status = {"lastSuccessfulTime": last_success} if last_success else {}
    return {
        "kind": "BackupSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": "0 3 * * *"},
        "status": status,
    }


def backup(
    name: str,
    *,
    namespace: str = "prod",
    schedule_name: str | None = "nightly",
    phase: str = "Completed",
    completed: datetime.timedelta | None = THREE_HOURS,
    storage: dict[str, Any] | None = None,
    free_percent: float | None = None,
    measured: datetime.timedelta = THREE_HOURS,
) -> dict[str, Any]:
    labels = {"orion.io/backup-schedule": schedule_name} if schedule_name else {}
    status: dict[str, Any] = {"phase": phase}
    if completed is not None:
        status["completedAt"] = stamp(completed)
    if free_percent is not None:
        total = 100 * 2**30
        status["volumeSpace"] = {
            "freeBytes": int(total * free_percent / 100),
            "totalBytes": total,
            "freePercent": free_percent,
            "measuredAt": stamp(measured),
        }
    return {
        "kind": "Backup",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"type": "platform", "storage": storage or {}},
        "status": status,
    }


# --- Health check responding OK -----------------------------------------------------------------


def test_a_healthy_api_probed_a_minute_ago_is_green() -> None:
    line = health_line(api_deployment(), NOW, DEFAULTS)
    assert line.status is LineStatus.OK
    assert "1m ago" in line.reason
    assert str(line.subject) == "ApiDeployment prod/orion-api"


def test_a_degraded_api_is_red_and_says_what_is_down() -> None:
    apid = api_deployment(
        phase="Degraded", healthy="False", health_state="degraded", message="redis disconnected"
    )
    line = health_line(apid, NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "Degraded" in line.reason and "redis disconnected" in line.reason


def test_an_api_never_probed_is_red() -> None:
    line = health_line(api_deployment(phase="Available", healthy=None), NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "not probed" in line.reason


def test_a_healthy_result_from_an_hour_ago_is_red_because_nobody_is_probing() -> None:
    line = health_line(api_deployment(probed=hours(1)), NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "is the operator running" in line.reason


def test_a_long_probe_interval_allows_an_older_result() -> None:
    spec = {"image": "orion-api:1", "healthCheck": {"intervalSeconds": 600}}
    line = health_line(api_deployment(probed=minutes(20), spec=spec), NOW, DEFAULTS)
    assert line.status is LineStatus.OK


# --- No critical alerts -------------------------------------------------------------------------


def test_a_database_down_event_two_hours_ago_is_red() -> None:
    line = critical_alerts_line([event("DatabaseDown", hours(2))], [], NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "DatabaseDown on ApiDeployment prod/orion-api (2h ago)" in line.reason
    assert line.details["alerts"][0]["count"] == 2


def test_a_critical_event_older_than_the_window_is_green() -> None:
    line = critical_alerts_line([event("DatabaseDown", hours(25))], [], NOW, DEFAULTS)
    assert line.status is LineStatus.OK


def test_a_narrower_window_leaves_out_an_older_alert() -> None:
    events = [event("BackupFailed", hours(7), kind="Backup", name="nightly-1")]
    assert critical_alerts_line(events, [], NOW, DEFAULTS).status is LineStatus.FAIL
    narrow = Thresholds(alert_window=hours(6))
    assert critical_alerts_line(events, [], NOW, narrow).status is LineStatus.OK


@pytest.mark.parametrize(
    "noise",
    [
        event("RedisDown", hours(1)),  # a warning alert, not a critical one
        event("Recovered", hours(1), type="Normal"),
        event("BackupFailed", hours(1), kind="Pod", api_version="v1"),  # not an Orion object
    ],
)
def test_warnings_recoveries_and_other_objects_events_are_not_critical_alerts(
    noise: dict[str, Any],
) -> None:
    assert critical_alerts_line([noise], [], NOW, DEFAULTS).status is LineStatus.OK


def test_a_critical_alert_still_firing_is_red_even_when_its_event_is_gone() -> None:
    firing = {
        "database": {
            "firing": True,
            "severity": "critical",
            "reason": "DatabaseDown",
            "since": stamp(hours(30)),
        },
        "redis": {"firing": True, "severity": "warning", "reason": "RedisDown"},
    }
    line = critical_alerts_line([], [api_deployment(alerts=firing)], NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "firing now: DatabaseDown on ApiDeployment prod/orion-api" in line.reason
    assert "RedisDown" not in line.reason


def test_the_health_probes_critical_reasons_are_the_ones_the_checklist_counts() -> None:
    down = classify_health(None, None, failure="timed out after 10 s")
    error = classify_health(200, b'{"status": "error", "services": {"database": "disconnected"}}')
    redis = classify_health(200, b'{"status": "degraded", "services": {"redis": "disconnected"}}')
    triage = TriageResult(
        database=DependencyCheck("database", DependencyStatus.DOWN, "connection refused"),
        redis=DependencyCheck("redis", DependencyStatus.DOWN, "connection refused"),
    )
    problems = [*down.problems, *error.problems, *redis.problems, *triage.problems]
    assert {p.reason for p in problems} == {"ApiDown", "DatabaseDown", "RedisDown"}
    for problem in problems:
        counted = problem.reason in CRITICAL_ALERT_REASONS
        assert counted == (problem.severity is Severity.CRITICAL), problem


# --- Backups running correctly ------------------------------------------------------------------


def test_a_schedule_whose_last_backup_finished_three_hours_ago_is_green() -> None:
    line = backup_line(schedule(last_success=stamp(hours(3))), [], NOW, DEFAULTS)
    assert line.status is LineStatus.OK
    assert "3h ago" in line.reason and "26 h" in line.reason


def test_a_schedule_without_a_success_in_27_hours_is_red() -> None:
    line = backup_line(schedule(last_success=stamp(hours(27))), [], NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "1d3h ago, over 26 h" in line.reason


def test_the_newest_completed_backup_of_the_schedule_counts() -> None:
    backups = [
        backup("nightly-new", completed=hours(2)),
        backup("nightly-failed", phase="Failed", completed=minutes(10)),
        backup("other-schedule", schedule_name="hourly", completed=minutes(5)),
        backup("other-namespace", namespace="staging", completed=minutes(5)),
    ]
    line = backup_line(schedule(last_success=stamp(hours(30))), backups, NOW, DEFAULTS)
    assert line.status is LineStatus.OK
    assert "(nightly-new) finished 2h ago" in line.reason


def test_a_schedule_that_never_completed_a_backup_is_red() -> None:
    failed = [backup("nightly-1", phase="Failed", completed=hours(1))]
    line = backup_line(schedule(), failed, NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "no Backup of this schedule has completed" in line.reason


def test_the_backup_age_threshold_is_configurable() -> None:
    tight = Thresholds(backup_max_age=hours(2))
    line = backup_line(schedule(last_success=stamp(hours(3))), [], NOW, tight)
    assert line.status is LineStatus.FAIL


# --- Enough disk space (> 20% free) -------------------------------------------------------------


def test_a_volume_with_63_percent_free_is_green_and_one_with_15_is_red() -> None:
    claim = {"volume": {"path": "/backups", "claimName": "backups"}}
    lines = disk_space_lines(
        [
            backup("a", storage=claim, free_percent=63.0),
            backup("b", namespace="staging", storage=claim, free_percent=15.0),
        ],
        NOW,
        DEFAULTS,
    )
    by_namespace = {line.subject.namespace: line for line in lines if line.subject}
    assert by_namespace["prod"].status is LineStatus.OK
    assert "63% free" in by_namespace["prod"].reason
    assert by_namespace["staging"].status is LineStatus.FAIL
    assert "15% free" in by_namespace["staging"].reason


def test_exactly_20_percent_free_is_not_enough() -> None:
    [line] = disk_space_lines([backup("a", free_percent=20.0)], NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL


def test_the_newest_measurement_of_a_volume_wins() -> None:
    backups = [
        backup("old", free_percent=50.0, measured=hours(26)),
        backup("new", free_percent=12.5, measured=hours(1)),
        backup("unmeasured"),
    ]
    [line] = disk_space_lines(backups, NOW, DEFAULTS)
    assert line.status is LineStatus.FAIL
    assert "12.5% free" in line.reason and "1h ago" in line.reason


def test_a_volume_no_backup_measured_is_unknown_and_s3_has_no_line() -> None:
    s3 = {"s3": {"bucket": "orion-backups"}}
    lines = disk_space_lines([backup("a"), backup("b", storage=s3)], NOW, DEFAULTS)
    assert [line.status for line in lines] == [LineStatus.UNKNOWN]
    assert lines[0].reason.startswith("./backups:")


async def test_the_operator_measures_a_volume_as_df_does_and_s3_not_at_all(tmp_path: Path) -> None:
    space = await measure_volume_space(VolumeLocation(tmp_path / "not-made-yet"))
    usage = shutil.disk_usage(tmp_path)
    assert space is not None
    assert space.total_bytes == usage.total
    assert abs(space.free_percent - 100 * usage.free / usage.total) < 1  # others write too
    assert await measure_volume_space(S3Location(bucket="orion-backups")) is None


# --- Database connections within limits ---------------------------------------------------------


def test_connections_within_the_default_80_percent_are_green() -> None:
    apid = api_deployment(databaseConnections={"inUse": 80, "maxConnections": 100})
    line = connections_line(apid)
    assert line.status is LineStatus.OK
    assert "80 of 100 connections in use (80%)" in line.reason


def test_connections_over_the_spec_share_are_red() -> None:
    spec = {"image": "orion-api:1", "databaseConnections": {"maxShare": 0.5}}
    apid = api_deployment(spec=spec, databaseConnections={"inUse": 51, "maxConnections": 100})
    line = connections_line(apid)
    assert line.status is LineStatus.FAIL
    assert "over the limit of 50 (50% of max_connections)" in line.reason


def test_connections_not_reported_yet_are_unknown() -> None:
    assert connections_line(api_deployment()).status is LineStatus.UNKNOWN


# --- The whole checklist ------------------------------------------------------------------------


def all_green_state() -> ClusterState:
    return ClusterState(
        api_deployments=[api_deployment(databaseConnections={"inUse": 12, "maxConnections": 100})],
        backup_schedules=[schedule(last_success=stamp(hours(3)))],
        backups=[backup("nightly-1", free_percent=70.0)],
        events=[event("RedisDown", hours(1))],
    )


def test_a_cluster_in_order_is_all_green_but_the_5xx_line_which_is_not_configured() -> None:
    checklist = build_checklist(all_green_state(), NOW)
    assert checklist.ok
    statuses = {line.item: line.status for line in checklist.lines}
    assert statuses == {
        Item.HEALTH: LineStatus.OK,
        Item.CRITICAL_ALERTS: LineStatus.OK,
        Item.BACKUPS: LineStatus.OK,
        Item.HTTP_5XX: LineStatus.NOT_CONFIGURED,
        Item.DISK_SPACE: LineStatus.OK,
        Item.DATABASE_CONNECTIONS: LineStatus.OK,
    }
    assert [line.item for line in checklist.lines] == list(Item)  # the runbook's order


def test_one_red_line_makes_the_checklist_fail() -> None:
    state = all_green_state()
    state = ClusterState(
        api_deployments=state.api_deployments,
        backup_schedules=state.backup_schedules,
        backups=state.backups,
        events=[event("RolledBack", hours(1))],
    )
    checklist = build_checklist(state, NOW)
    assert not checklist.ok
    assert [line.item for line in checklist.lines if line.status is LineStatus.FAIL] == [
        Item.CRITICAL_ALERTS
    ]


def test_no_backup_schedule_at_all_is_red() -> None:
    checklist = build_checklist(ClusterState(api_deployments=[api_deployment()]), NOW)
    backups = [line for line in checklist.lines if line.item is Item.BACKUPS]
    assert [line.status for line in backups] == [LineStatus.FAIL]
    assert not checklist.ok


def test_text_without_colour_reads_with_words_and_marks_only() -> None:
    state = all_green_state()
    state = ClusterState(
        api_deployments=[api_deployment(phase="Down", healthy="False", health_state="down")],
        backup_schedules=state.backup_schedules,
        backups=state.backups,
    )
    text = render_text(build_checklist(state, NOW), scope="namespace prod", colour=False)
    assert "\033[" not in text
    assert "✗ FAIL" in text and "✓ OK" in text and "- NOT CONFIGURED" in text
    assert "Daily checklist (namespace prod) at 2026-03-02 12:00:00 UTC" in text
    assert "1 line(s) need attention." in text


def test_text_with_colour_paints_red_and_green() -> None:
    text = render_text(build_checklist(all_green_state(), NOW), scope="x", colour=True)
    assert "\033[32m✓ OK" in text
    assert text.rstrip().endswith("All green.")


def test_json_has_stable_keys_and_round_trips() -> None:
    document = checklist_json(build_checklist(all_green_state(), NOW), namespace="prod")
    decoded = json.loads(json.dumps(document))
    assert set(decoded) == {"version", "generatedAt", "namespace", "ok", "lines"}
    assert decoded["generatedAt"] == "2026-03-02T12:00:00Z"
    assert decoded["ok"] is True
    for line in decoded["lines"]:
        assert set(line) == {"item", "title", "status", "reason", "object", "details"}
    health = decoded["lines"][0]
    assert health["object"] == {"kind": "ApiDeployment", "namespace": "prod", "name": "orion-api"}
    assert health["status"] == "ok"


# --- The kubeconfig, the way kubectl finds it ---------------------------------------------------


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u", "namespace": "prod"}},
            {"name": "other", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "main",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_flag_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write_kubeconfig(tmp_path / "env.yaml", "https://env.example:6443")
    flag = write_kubeconfig(tmp_path / "flag.yaml", "https://flag.example:6443")
    monkeypatch.setenv("KUBECONFIG", str(from_env))
    assert load_config(None, None).cluster.server == "https://env.example:6443"
    assert load_config(str(flag), None).cluster.server == "https://flag.example:6443"


def test_a_kubeconfig_list_is_merged_as_kubectl_merges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first file has a context but no current-context: kubectl takes that from the second.
    first = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "a", "cluster": {"server": "https://a.example:6443"}}],
        "users": [{"name": "ua", "user": {"token": "ta"}}],
        "contexts": [{"name": "decoy", "context": {"cluster": "a", "user": "ua"}}],
    }
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(first))
    second = write_kubeconfig(tmp_path / "b.yaml", "https://b.example:6443")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a.yaml'}{os.pathsep}{second}")
    assert load_config(None, None).cluster.server == "https://b.example:6443"
    assert load_config(None, None).namespace == "prod"
    assert load_config(None, "decoy").cluster.server == "https://a.example:6443"


def test_the_first_existing_file_of_a_kubeconfig_list_and_the_context_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = write_kubeconfig(tmp_path / "b.yaml", "https://b.example:6443")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing.yaml'}:{existing}")
    assert load_config(None, None).namespace == "prod"
    assert load_config(None, "other").namespace == "default"
    with pytest.raises(PluginError):
        load_config(None, "nope")
    with pytest.raises(PluginError, match="no such file"):
        load_config(str(tmp_path / "absent.yaml"), None)
