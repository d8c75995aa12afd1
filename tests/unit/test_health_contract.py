"""Classification of /health answers, as the runbook's table says."""

from __future__ import annotations

import copy
import json

from hypothesis import given
from hypothesis import strategies as st

from orion_operator.alerts.model import Severity
from orion_operator.health.contract import HealthState, classify_health
from tests.fixtures.health_bodies import DEGRADED_REDIS, ERROR_DATABASE, OK


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_runbook_ok_body_is_ok_with_per_service_detail() -> None:
    report = classify_health(200, body(OK))
    assert report.state is HealthState.OK
    assert report.problems == ()
    assert (report.database, report.redis, report.response_time) == (
        "connected",
        "connected",
        "5ms",
    )
    assert set(report.queues) == {"dian", "backup", "reports"}


def test_runbook_degraded_body_names_redis_as_a_warning() -> None:
    report = classify_health(200, body(DEGRADED_REDIS))
    assert report.state is HealthState.DEGRADED
    assert [(p.check, p.severity, p.reason) for p in report.problems] == [
        ("redis", Severity.WARNING, "RedisDown")
    ]


def test_database_disconnected_is_error_and_critical_even_with_503() -> None:
    for code in (200, 503):
        report = classify_health(code, body(ERROR_DATABASE))
        assert report.state is HealthState.ERROR
        assert [(p.check, p.severity) for p in report.problems] == [("database", Severity.CRITICAL)]


def test_queue_disconnected_or_failing_over_threshold_is_degraded() -> None:
    document = copy.deepcopy(OK)
    document["services"]["queues"]["dian"]["status"] = "disconnected"
    document["services"]["queues"]["reports"]["failed"] = 51
    report = classify_health(200, body(document), queue_failed_threshold=50)
    assert report.state is HealthState.DEGRADED
    assert [(p.check, p.reason) for p in report.problems] == [
        ("queue/dian", "QueueDown"),
        ("queue/reports", "QueueFailing"),
    ]
    assert classify_health(200, body(document), queue_failed_threshold=None).problems[1:] == ()


def test_an_answer_listing_thousands_of_queues_reads_the_first_hundred_by_name() -> None:
    document = copy.deepcopy(OK)
    document["services"]["queues"] = {
        f"q{n:04d}": {"status": "disconnected"} for n in reversed(range(5000))
    }
    report = classify_health(200, body(document))
    assert report.state is HealthState.DEGRADED
    assert sorted(report.queues) == [f"q{n:04d}" for n in range(100)]
    assert len(report.problems) == 100  # one alert per queue read, not 5,000


def test_no_answer_bad_code_or_foreign_body_is_down() -> None:
    timeout = classify_health(None, None, failure="no answer within 10s")
    assert (timeout.state, timeout.message) == (HealthState.DOWN, "no answer within 10s")
    assert classify_health(500, body(OK)).state is HealthState.DOWN
    assert classify_health(500, b"Internal Server Error").state is HealthState.DOWN
    assert classify_health(200, b"<html>hello</html>").state is HealthState.DOWN
    assert classify_health(200, body({"status": "fine"})).state is HealthState.DOWN
    assert classify_health(200, body(["ok"])).state is HealthState.DOWN
    assert classify_health(404, b"").problems[0].reason == "ApiDown"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(status=st.one_of(st.none(), st.integers(100, 599)), raw=st.binary(max_size=300))
def test_arbitrary_bytes_always_classify(status: int | None, raw: bytes) -> None:
    assert classify_health(status, raw).state in HealthState


@given(document=json_values, services=json_values, top=st.sampled_from(["ok", "degraded", "error"]))
def test_arbitrary_json_always_classifies(document: object, services: object, top: str) -> None:
    assert classify_health(200, body(document)).state in HealthState
    shaped = {"status": top, "services": services}
    assert classify_health(200, body(shaped)).state in HealthState
