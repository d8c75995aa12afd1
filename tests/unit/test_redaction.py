from __future__ import annotations

from orion_operator.redaction import redact, secrets_of_url
from orion_operator.settings import OperatorSettings


def test_url_passwords_are_masked_everywhere() -> None:
    url = "postgresql://orion:p%40ss-w0rd@db:5432/orion"
    text = f"connection to {url} failed; password=p@ss-w0rd; retry with p%40ss-w0rd"
    cleaned = redact(text, secrets_of_url(url))
    assert "p@ss-w0rd" not in cleaned
    assert "p%40ss-w0rd" not in cleaned
    assert "postgresql://orion:***@db:5432/orion" in cleaned


def test_url_without_password_has_no_secrets() -> None:
    assert secrets_of_url("postgresql://orion@db/orion") == []
    assert redact("host=db user=orion") == "host=db user=orion"


def test_retry_delay_doubles_and_is_capped() -> None:
    settings = OperatorSettings(retry_initial_delay_seconds=2, retry_max_delay_seconds=30)
    assert [settings.retry_delay(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]
