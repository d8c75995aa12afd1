"""Whatever an API answers on /health, the operator classifies it and never raises.

Properties over arbitrary bytes, arbitrary JSON (deeply nested, odd types), any status code and,
through a real HTTP exchange, any Content-Type: the classification is one of the four states,
follows the runbook's table, and fits in an object's status.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from orion_operator.health.contract import HealthReport, HealthState, classify_health
from orion_operator.health.probe import probe_health
from tests.fixtures.health_bodies import OK

# The CRD's integers are int64; a larger number makes the API server refuse the status write.
INT64_MAX = 2**63 - 1
# Generous bound for one service's text in status (the body itself may be up to 1 MiB).
MAX_SERVICE_TEXT = 1000

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 10, max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    # Lone surrogates too: JSON may carry them as \ud800 escapes.
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()))
    | st.sampled_from(["connected", "disconnected", "ok", "error", "degraded", ""])
    | st.text(min_size=300, max_size=2000)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["status", "waiting", "active", "failed", "database", "redis"])
            | st.text(),
            children,
            max_size=5,
        )
    ),
    max_leaves=40,
)
status_codes = st.none() | st.integers(min_value=-(2**31), max_value=2**31) | st.integers(100, 599)


def nested(depth: int, leaf: object, container: str) -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if container == "list" else {"status": value}
    return value


@st.composite
def contract_documents(draw: st.DrawFn) -> dict[str, object]:
    """Bodies shaped like the contract, with any value anywhere the contract names one."""
    document: dict[str, object] = draw(st.dictionaries(st.text(), json_values, max_size=3))
    document["status"] = draw(st.sampled_from(["ok", "degraded", "error"]))
    if draw(st.booleans()):
        document["services"] = draw(json_values)
        return document
    services: dict[str, object] = {}
    for key in ("database", "redis", "responseTime"):
        if draw(st.booleans()):
            services[key] = draw(st.just("connected") | json_values)
    queue = st.fixed_dictionaries(
        {},
        optional={
            "status": st.just("connected") | json_values,
            "waiting": json_values,
            "active": json_values,
            "failed": st.integers(min_value=-5) | json_values,
        },
    )
    services["queues"] = draw(
        st.dictionaries(st.text(max_size=300), queue | json_values, max_size=4) | json_values
    )
    document["services"] = services
    return document


def fits_in_status(report: HealthReport) -> None:
    """Everything the health daemon writes to status.health: bounded text, int64 counts."""
    assert isinstance(report.message, str)
    for text in (report.database, report.redis, report.response_time):
        assert text is None or (isinstance(text, str) and len(text) <= MAX_SERVICE_TEXT)
    for name, queue in report.queues.items():
        assert isinstance(name, str) and len(name) <= MAX_SERVICE_TEXT
        assert isinstance(queue.status, str) and len(queue.status) <= MAX_SERVICE_TEXT
        for count in (queue.waiting, queue.active, queue.failed):
            assert type(count) is int and 0 <= count <= INT64_MAX
    # Status is serialised as JSON: every field must be representable.
    json.dumps(
        {
            "message": report.message,
            "database": report.database,
            "redis": report.redis,
            "queues": {n: q.__dict__ for n, q in report.queues.items()},
        }
    )


def follows_the_runbook(report: HealthReport, status: int | None, document: object) -> None:
    """The table: ok only on 200 and a clean contract; error is the database; the rest is down."""
    assert report.state in HealthState
    assert (report.problems == ()) == (report.state is HealthState.OK)
    is_contract = isinstance(document, dict) and document.get("status") in (
        "ok",
        "degraded",
        "error",
    )
    if status is None or not is_contract:
        assert report.state is HealthState.DOWN
        assert [p.reason for p in report.problems] == ["ApiDown"]
        return
    assert isinstance(document, dict)
    services = document.get("services")
    database = services.get("database") if isinstance(services, dict) else None
    database_down = database is not None and database != "connected"
    if document["status"] == "error" or database_down:
        assert report.state is HealthState.ERROR
        assert [(p.check, p.reason) for p in report.problems] == [("database", "DatabaseDown")]
    elif status != 200:
        assert report.state is HealthState.DOWN
    else:
        assert report.state in (HealthState.OK, HealthState.DEGRADED)
        assert (report.state is HealthState.OK) == (
            document["status"] == "ok" and not report.problems
        )
    assert report.http_status == status


def parsed(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@given(status=status_codes, raw=st.binary(max_size=2000))
@example(status=200, raw=b"[" * 100_000)  # deeper than Python's stack
@example(status=200, raw=b'{"status": "ok", "services": {"database": ' + b"[" * 50_000 + b"}}")
@example(status=200, raw=b"\xef\xbb\xbf" + json.dumps(OK).encode())  # a UTF-8 byte order mark
@example(status=200, raw=json.dumps(OK).encode("utf-16"))
@example(status=200, raw=b'{"status": "ok", "status": "fine"}')  # the last duplicate key wins
@example(status=200, raw=b'{"status": "ok", "services": {"database": NaN}}')
@example(status=200, raw=b'{"status": "ok"}' + b" garbage")
@example(status=200, raw=b'{"status": "ok", "x": ' + b"9" * 5000 + b"}")  # over int()'s limit
def test_any_bytes_with_any_status_code_classify(status: int | None, raw: bytes) -> None:
    report = classify_health(status, raw)
    follows_the_runbook(report, status, parsed(raw))
    fits_in_status(report)


@given(status=status_codes, document=json_values)
def test_any_json_document_classifies(status: int | None, document: object) -> None:
    raw = json.dumps(document).encode()
    report = classify_health(status, raw)
    follows_the_runbook(report, status, document)
    fits_in_status(report)


@given(
    status=st.sampled_from([200, 503, 500, 302]),
    document=contract_documents(),
    threshold=st.none() | st.integers(min_value=0, max_value=2**64),
)
@example(
    status=200,
    document={
        "status": "ok",
        "services": {"queues": {"dian": {"status": "connected", "failed": 10**30}}},
    },
    threshold=None,
)
def test_contract_shaped_bodies_with_odd_values_classify_and_fit_in_status(
    status: int, document: dict[str, object], threshold: int | None
) -> None:
    report = classify_health(
        status, json.dumps(document).encode(), queue_failed_threshold=threshold
    )
    follows_the_runbook(report, status, document)
    fits_in_status(report)


@given(
    depth=st.integers(min_value=1, max_value=3000),
    container=st.sampled_from(["list", "dict"]),
    where=st.sampled_from(["top", "database", "redis", "queue", "queue status", "responseTime"]),
)
@settings(max_examples=60)
def test_deeply_nested_bodies_classify(depth: int, container: str, where: str) -> None:
    deep = nested(depth, "connected", container)
    document: object
    if where == "top":
        document = deep
    elif where in ("database", "redis", "responseTime"):
        document = {"status": "ok", "services": {where: deep}}
    elif where == "queue":
        document = {"status": "ok", "services": {"queues": {"dian": deep}}}
    else:
        document = {"status": "ok", "services": {"queues": {"dian": {"status": deep}}}}
    try:
        raw = json.dumps(document).encode()
    except RecursionError:
        assume(False)
    report = classify_health(200, raw)
    # Too deep for the JSON parser is not the contract; otherwise the table decides.
    follows_the_runbook(report, 200, parsed(raw))
    fits_in_status(report)


# --- the same through a real HTTP exchange: the Content-Type never matters, the body does -----


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes


class RawHttpServer:
    """Answers each path with the bytes registered for it, written by hand so any code goes."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            answer = self.answers[path]
            head = [f"HTTP/1.1 {answer.status} Whatever".encode()]
            if answer.content_type is not None:
                head.append(b"Content-Type: " + answer.content_type.encode("latin-1"))
            head += [f"Content-Length: {len(answer.body)}".encode(), b"Connection: close"]
            writer.write(b"\r\n".join(head) + b"\r\n\r\n" + answer.body)
            await writer.drain()
        finally:
            writer.close()

    def url_for(self, answer: Answer) -> str:
        path = f"/health/{uuid.uuid4().hex}"
        self.answers[path] = answer
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawHttpServer]:
    server = RawHttpServer()
    yield server
    server.stop()


async def probe(url: str) -> HealthReport:
    async with aiohttp.ClientSession() as session:
        report, _ = await probe_health(session, url, timeout_seconds=5)
        return report


# Header values: printable Latin-1 without CR/LF (what a header line can carry).
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
content_types = (
    st.none()
    | header_text
    | st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=utf-16",
            "application/json; charset=no-such-charset",
            "application/problem+json",
            "text/html; charset=iso-8859-1",
            "text/plain",
            "application/octet-stream",
            "multipart/form-data; boundary=x",
            "",
        ]
    )
)
bodies = (
    st.binary(max_size=500)
    | json_values.map(lambda value: json.dumps(value).encode())
    | contract_documents().map(lambda value: json.dumps(value).encode())
    | st.just(json.dumps(OK).encode())
)


# 204 and 304 may not carry a body (RFC 9110): those answers are covered below with the 1xx.
BODILESS = (204, 304)


@given(
    status=st.integers(min_value=200, max_value=999).filter(lambda code: code not in BODILESS),
    content_type=content_types,
    body=bodies,
)
@example(status=200, content_type="text/html", body=json.dumps(OK).encode())
@example(status=200, content_type="application/json; charset=utf-16", body=json.dumps(OK).encode())
@example(status=200, content_type=None, body=b"")
@settings(
    max_examples=150,
    deadline=None,  # a shared machine: no timing assertions
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_over_http_any_code_and_content_type_classify_as_the_body_says(
    raw_server: RawHttpServer, status: int, content_type: str | None, body: bytes
) -> None:
    url = raw_server.url_for(Answer(status, content_type, body))
    report = asyncio.run(probe(url))
    # The probe read the answer and classified it exactly as the bare bytes are.
    assert report == classify_health(status, body)
    fits_in_status(report)


@given(status=st.integers(min_value=100, max_value=199) | st.sampled_from(BODILESS), body=bodies)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_over_http_informational_codes_still_classify(
    raw_server: RawHttpServer, status: int, body: bytes
) -> None:
    # A 1xx is not a final answer, and a 204 or 304 with a body breaks HTTP: whatever the client
    # makes of it, there is a classification, and it is not a healthy one.
    report = asyncio.run(probe(raw_server.url_for(Answer(status, "application/json", body))))
    assert report.state in (HealthState.DOWN, HealthState.ERROR)
    fits_in_status(report)
