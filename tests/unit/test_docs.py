"""The documentation says what the code does: every runbook section mapped, every setting and
metric listed, every relative link resolving, and the alert examples as the code renders them."""

from __future__ import annotations

import ast
import base64
import datetime
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.alerts.channels import (
    EmailChannel,
    WebhookChannel,
    alert_text,
    slack_payload,
)
from orion_operator.alerts.config import VARIABLES, AlertConfig, standard_webhook_secret
from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from orion_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNBOOK = DOCS / "runbook.es.md"
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _outside_code(text: str) -> Iterator[str]:
    """The lines of a Markdown text that are not inside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in _outside_code(text) if line.startswith("#")]


def _words(text: str) -> str:
    """A heading without its emoji, Markdown emphasis and surrounding spaces."""
    kept = "".join(
        char
        for char in unicodedata.normalize("NFC", text)
        if not unicodedata.category(char).startswith(("S", "C"))
        and not "\ufe00" <= char <= "\ufe0f"  # the variation selectors that follow emoji
    )
    return " ".join(kept.replace("*", "").split())


def _table_first_column(text: str) -> list[str]:
    rows = [line for line in _outside_code(text) if line.startswith("|")]
    cells = [row.strip("|").split("|")[0].strip() for row in rows]
    return [_words(cell) for cell in cells if cell and not set(cell) <= set("-: ")]


def test_every_runbook_section_has_a_row_in_the_mapping() -> None:
    sections = [_words(heading) for heading in _headings(_read(RUNBOOK))]
    assert len(sections) > 40, "the runbook's headings were not found"
    mapped = _table_first_column(_read(DOCS / "runbook.md"))

    missing = [section for section in sections if section not in mapped]

    assert not missing, f"runbook sections without a row in docs/runbook.md: {missing}"


def test_the_mapping_names_only_runbook_sections() -> None:
    sections = {_words(heading) for heading in _headings(_read(RUNBOOK))}
    mapped = _table_first_column(_read(DOCS / "runbook.md"))
    assert mapped[0] == "Runbook section"
    assert [row for row in mapped[1:] if row not in sections] == []


def test_every_operator_setting_is_documented() -> None:
    settings = _read(DOCS / "settings.md")
    prefix = OperatorSettings.model_config.get("env_prefix", "")
    variables = [f"{prefix}{name}".upper() for name in OperatorSettings.model_fields]
    assert variables, "no settings found"

    missing = [variable for variable in variables if f"`{variable}`" not in settings]

    assert not missing, f"settings not in docs/settings.md: {missing}"


def test_every_alert_variable_of_the_runbook_is_documented() -> None:
    settings = _read(DOCS / "settings.md")
    assert [name for name in VARIABLES if f"`{name}`" not in settings] == []


def _chart_values(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    # Maps that are passed through to Kubernetes as they are count as one value.
    opaque = {"resources", "settings", "labels", "podAnnotations", "nodeSelector", "affinity"}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in opaque:
            yield from _chart_values(value, f"{path}.")
        else:
            yield path


def test_every_chart_value_is_documented() -> None:
    values = yaml.safe_load(_read(ROOT / "charts" / "orion-operator" / "values.yaml"))
    settings = _read(DOCS / "settings.md")
    paths = list(_chart_values(values))
    assert "prometheusRule.backupMaxAgeHours" in paths

    assert [path for path in paths if f"`{path}`" not in settings] == []


def _defined_metrics() -> dict[str, str]:
    """Metric name → type, read from the calls in metrics.py (Counter("orion_...", ...))."""
    tree = ast.parse(_read(ROOT / "operator" / "orion_operator" / "metrics.py"))
    found = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("Counter", "Gauge", "Histogram", "Summary")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found[str(node.args[0].value)] = node.func.id.lower()
    return found


def test_every_metric_is_documented_with_its_type() -> None:
    metrics = _defined_metrics()
    assert len(metrics) >= 10, "metrics.py was not parsed"
    rows = {
        cells[0].strip("` "): cells[1].strip()
        for line in _outside_code(_read(DOCS / "metrics.md"))
        if line.startswith("| `orion_")
        for cells in [line.strip("|").split("|")]
    }

    assert {name: rows.get(name) for name in metrics} == metrics


def _relative_links(path: Path) -> Iterator[str]:
    text = "\n".join(_outside_code(_read(path)))
    text = re.sub(r"`[^`]*`", "", text)  # a link inside inline code is an example, not a link
    for target in MARKDOWN_LINK.findall(text):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            yield target


def _slug(heading: str) -> str:
    text = re.sub(r"`|\*\*", "", heading).strip().lower()
    text = "".join(char for char in text if char.isalnum() or char in " -_")
    return text.replace(" ", "-")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        # The runbook's anchors follow its emoji headings; it is kept as the team wrote it.
        check_anchor = anchor and destination.suffix == ".md" and destination != RUNBOOK
        if not destination.exists() or (
            check_anchor and anchor not in {_slug(h) for h in _headings(_read(destination))}
        ):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_keeps_both_set_up_commands_and_links_the_docs() -> None:
    readme = _read(ROOT / "README.md")
    assert "```sh\nscripts/run\n```" in readme
    assert "```sh\nscripts/test\n```" in readme
    assert "(docs/README.md)" in readme
    assert "(docs/runbook.md)" in readme


# The example of docs/alerts.md: a real DatabaseDown alert of a health cycle, fields as rendered.
TRIAGE = (
    "database disconnected: the API reports status error; triage: database down: cannot connect "
    'to PostgreSQL: connection failed: connection to server at "127.0.0.1", port 15432 failed: '
    "Connection refused Is the server running on that host and accepting TCP/IP connections?; "
    "redis up; queues up"
)
EXAMPLE_ALERT = Alert(
    id="459c2487-066a-5dc5-9895-36155c0881f7",
    check="database",
    reason="DatabaseDown",
    severity=Severity.CRITICAL,
    transition=Transition.FIRING,
    title="DatabaseDown: ApiDeployment prod/orion-api",
    message="database disconnected: the API reports status error",
    subject=ObjectRef("ApiDeployment", "prod", "orion-api"),
    occurred_at=datetime.datetime(2026, 11, 28, 3, 12, 9, tzinfo=datetime.UTC),
    details={"check": "database", "context": TRIAGE, "since": "2026-11-28T03:12:09+00:00"},
)
EXAMPLE_SECRET = "change-me-to-a-long-random-string"
EXAMPLE_CONFIG = {
    "ALERTS_ENABLED": "true",
    "ALERT_EMAIL": "oncall@example.com, platform@example.com",
    "SMTP_HOST": "smtp.example.com",
    "SMTP_FROM": "Orion <noreply@example.com>",
    "ALERT_WEBHOOK_URL": "https://hooks.example.com/orion",
    "ALERT_WEBHOOK_SECRET": EXAMPLE_SECRET,
}


@pytest.fixture
def alerts_page() -> str:
    return _read(DOCS / "alerts.md")


def test_the_email_example_is_what_the_code_sends(alerts_page: str) -> None:
    config = AlertConfig.from_mapping(EXAMPLE_CONFIG)
    message = EmailChannel(config).build_message(EXAMPLE_ALERT, EXAMPLE_ALERT.occurred_at)
    for header in ("Subject", "From", "To", "Date", "Message-ID", "X-Orion-Severity"):
        assert f"\n{header}: {message[header]}\n" in alerts_page
    assert alert_text(EXAMPLE_ALERT) in alerts_page


def test_the_slack_example_is_what_the_code_sends(alerts_page: str) -> None:
    rendered = json.dumps(slack_payload(EXAMPLE_ALERT), ensure_ascii=False, indent=2)
    assert f"```json\n{rendered}\n```" in alerts_page


def test_the_webhook_example_and_its_signature_are_what_the_code_sends(alerts_page: str) -> None:
    rendered = json.dumps(EXAMPLE_ALERT.as_payload(), ensure_ascii=False, indent=2)
    assert f"```json\n{rendered}\n```" in alerts_page
    body = json.dumps(EXAMPLE_ALERT.as_payload(), ensure_ascii=False, separators=(",", ":"))
    channel = WebhookChannel(AlertConfig.from_mapping(EXAMPLE_CONFIG))
    headers = channel.signed_headers(EXAMPLE_ALERT, body, EXAMPLE_ALERT.occurred_at)
    for name, value in headers.items():
        assert f"{name}: {value}\n" in alerts_page
    signature = headers["webhook-signature"].removeprefix("v1,")
    assert f"# prints {signature} for the example" in alerts_page
    assert f"`{standard_webhook_secret(EXAMPLE_SECRET)}`" in alerts_page


def _documented_verifier(page: str) -> Callable[[str, dict[str, str], bytes], bool]:
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/alerts.md should have one Python example"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/alerts.md", "exec"), namespace)
    verify: Callable[[str, dict[str, str], bytes], bool] = namespace["verify_orion_webhook"]
    return verify


@pytest.mark.parametrize("secret", [EXAMPLE_SECRET, standard_webhook_secret(EXAMPLE_SECRET)])
def test_the_documented_verification_accepts_real_signatures_and_refuses_tampering(
    alerts_page: str, secret: str
) -> None:
    verify = _documented_verifier(alerts_page)
    channel = WebhookChannel(AlertConfig.from_mapping({**EXAMPLE_CONFIG}))
    body = json.dumps(EXAMPLE_ALERT.as_payload(), separators=(",", ":")).encode()
    headers = channel.signed_headers(EXAMPLE_ALERT, body.decode())  # signed now

    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"critical", b"info"))
    assert not verify("another-secret", headers, body)
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    assert not verify(secret, channel.signed_headers(EXAMPLE_ALERT, body.decode(), old), body)
    key = base64.b64decode(standard_webhook_secret(secret).removeprefix("whsec_"))
    assert key == EXAMPLE_SECRET.encode()
