"""Alert delivery to e-mail, Slack and a signed webhook, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import prometheus_client
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from orion_operator.alerts.channels import ChannelError, SlackChannel, WebhookChannel
from orion_operator.alerts.config import AlertConfig, AlertConfigError, standard_webhook_secret
from orion_operator.alerts.dispatch import AlertDispatcher, RetryPolicy, build_dispatcher
from orion_operator.alerts.model import Alert, ObjectRef, Severity, Transition
from tests.alert_receivers import (
    HttpReceiver,
    Reply,
    SelfSignedCertificate,
    SmtpReceiver,
    make_self_signed_certificate,
)

FAST_RETRY = RetryPolicy(attempts=3, initial_delay_seconds=0.01, max_delay_seconds=0.05)
SLACK_PATH = "/services/T0ORION/B0ALERTS/slackTokenXyz123"
WEBHOOK_PATH = "/webhooks/alerts/hookPathToken456"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example form


def make_alert(
    reason: str = "DatabaseDown",
    severity: Severity = Severity.CRITICAL,
    transition: Transition = Transition.FIRING,
) -> Alert:
    return Alert(
        id=f"alert-{uuid.uuid4().hex[:12]}",
        check="database",
        reason=reason,
        severity=severity,
        transition=transition,
        title="The database is down",
        message="SELECT 1 failed: connection refused on postgres:5432",
        subject=ObjectRef("ApiDeployment", "shop", "orion-api"),
        occurred_at=datetime.datetime(2024, 5, 4, 3, 2, 1, tzinfo=datetime.UTC),
        details={"database": "down", "redis": "ok"},
    )


def counter(name: str, channel: str, severity: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        name, {"channel": channel, "severity": severity}
    )
    return value or 0.0


@pytest.fixture
async def http() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCertificate:
    return make_self_signed_certificate(Path(tmp_path_factory.mktemp("tls")))


def smtp_settings(smtp: SmtpReceiver, **extra: str) -> dict[str, str]:
    return {
        "ALERTS_ENABLED": "true",
        "ALERT_EMAIL": "oncall@example.com, dba@example.com",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_FROM": "Orion <noreply@example.com>",
        **extra,
    }


# --- settings ---------------------------------------------------------------------------------


def test_runbook_variables_configure_every_channel_and_never_print_secrets() -> None:
    config = AlertConfig.from_mapping(
        {
            "ALERTS_ENABLED": "true",
            "ALERT_EMAIL": "admin@tudominio.com,ops@tudominio.com",
            "SMTP_HOST": "smtp.gmail.com",
            "SMTP_USER": "noreply@tudominio.com",
            "SMTP_PASS": "tu-password",
            "SMTP_FROM": "Orion <noreply@tudominio.com>",
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/YOUR/WEBHOOK/URL",
            "ALERT_WEBHOOK_URL": "https://api.tu-sistema.com/webhooks/alerts",
            "ALERT_WEBHOOK_SECRET": "tu-secret-opcional",
            "PATH": "/usr/bin",  # the rest of the environment is ignored
        }
    )

    assert config.enabled
    assert config.email_recipients == ("admin@tudominio.com", "ops@tudominio.com")
    assert config.smtp_port == 587
    assert not config.implicit_tls
    assert (config.email_enabled, config.slack_enabled, config.webhook_enabled) == (
        True,
        True,
        True,
    )
    assert AlertDispatcher(config).channel_names == ["email", "slack", "webhook"]
    shown = f"{config!r} {config}"
    for secret in ("tu-password", "tu-secret-opcional", "YOUR/WEBHOOK/URL", "webhooks/alerts"):
        assert secret not in shown


def test_alerts_are_off_by_default_so_only_events_remain() -> None:
    settings = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"}

    assert not AlertConfig.from_mapping(settings).enabled
    assert build_dispatcher(settings) is None
    assert build_dispatcher({**settings, "ALERTS_ENABLED": "false"}) is None
    # Enabled but nowhere to send: still nothing to dispatch.
    assert build_dispatcher({"ALERTS_ENABLED": "true"}) is None


async def test_disabled_dispatcher_sends_nothing(http: HttpReceiver) -> None:
    config = AlertConfig.from_mapping({"SLACK_WEBHOOK_URL": http.url(SLACK_PATH)})

    assert await AlertDispatcher(config).dispatch(make_alert()) == {}
    assert http.requests == []


def test_the_secret_wins_over_the_environment_and_empty_values_are_unset() -> None:
    environ = {"ALERTS_ENABLED": "true", "SMTP_HOST": "env-smtp", "SMTP_PORT": "2525"}
    secret = {"SMTP_HOST": "secret-smtp", "SMTP_PORT": "", "ALERT_EMAIL": "a@example.com"}

    config = AlertConfig.from_mapping(environ, secret)

    assert config.smtp_host == "secret-smtp"
    assert config.smtp_port == 2525
    assert config.email_recipients == ("a@example.com",)


def test_half_configured_email_is_off_and_says_why() -> None:
    config = AlertConfig.from_mapping({"ALERTS_ENABLED": "1", "ALERT_EMAIL": "a@example.com"})

    assert not config.email_enabled
    assert config.incomplete_channels() == [
        "ALERT_EMAIL is set but SMTP_HOST is not: no e-mail alerts"
    ]


def test_bad_settings_name_the_variable_but_not_its_value() -> None:
    with pytest.raises(AlertConfigError) as caught:
        AlertConfig.from_mapping(
            {
                "ALERTS_ENABLED": "true",
                "SMTP_PORT": "five-eight-seven",
                "SLACK_WEBHOOK_URL": "hooks.slack.com/services/T1/B2/leakedToken",
                "ALERT_EMAIL": "not-an-address",
            }
        )

    message = str(caught.value)
    for variable in ("SMTP_PORT", "SLACK_WEBHOOK_URL", "ALERT_EMAIL"):
        assert variable in message
    assert "leakedToken" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- e-mail -----------------------------------------------------------------------------------


async def test_critical_alert_arrives_as_an_email_naming_reason_and_object(
    smtp: SmtpReceiver,
) -> None:
    dispatcher = AlertDispatcher(AlertConfig.from_mapping(smtp_settings(smtp)), retry=FAST_RETRY)
    alert = make_alert()

    assert await dispatcher.dispatch(alert) == {"email": True}

    [mail] = smtp.messages
    assert sorted(mail.rcpt_tos) == ["dba@example.com", "oncall@example.com"]
    assert mail.mail_from == "noreply@example.com"
    message = mail.message
    assert message["Subject"] == "[CRITICAL] DatabaseDown: ApiDeployment shop/orion-api"
    assert message["From"] == "Orion <noreply@example.com>"
    assert message["Message-ID"].endswith("@example.com>")
    assert alert.id in message["Message-ID"]
    assert message["Date"] is not None
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "DatabaseDown" in body
    assert "ApiDeployment shop/orion-api" in body
    assert "connection refused on postgres:5432" in body
    assert "2024-05-04 03:02:01 UTC" in body
    # The server offered no STARTTLS and no AUTH: plain delivery, no login attempted.
    assert not mail.over_tls and mail.login is None


async def test_email_upgrades_to_starttls_and_logs_in(
    certificate: SelfSignedCertificate,
) -> None:
    with SmtpReceiver(
        certificate=certificate, starttls=True, credentials=("alerts@example.com", "smtp-pw-123")
    ) as smtp:
        config = AlertConfig.from_mapping(
            smtp_settings(smtp, SMTP_USER="alerts@example.com", SMTP_PASS="smtp-pw-123")
        )
        dispatcher = AlertDispatcher(
            config, retry=FAST_RETRY, tls_context=certificate.client_context()
        )

        assert await dispatcher.dispatch(make_alert()) == {"email": True}

        [mail] = smtp.messages
    assert mail.over_tls
    assert mail.login == "alerts@example.com"
    assert mail.message["Subject"].startswith("[CRITICAL] DatabaseDown")


async def test_email_over_implicit_tls_when_smtp_secure(
    certificate: SelfSignedCertificate,
) -> None:
    with SmtpReceiver(certificate=certificate, implicit_tls=True) as smtp:
        config = AlertConfig.from_mapping(smtp_settings(smtp, SMTP_SECURE="true"))
        dispatcher = AlertDispatcher(
            config, retry=FAST_RETRY, tls_context=certificate.client_context()
        )

        assert await dispatcher.dispatch(make_alert(severity=Severity.WARNING)) == {"email": True}

        [mail] = smtp.messages
    assert mail.over_tls
    assert mail.message["Subject"].startswith("[WARNING] ")


async def test_a_refused_smtp_login_fails_at_once_without_retrying(
    certificate: SelfSignedCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    with SmtpReceiver(
        certificate=certificate, starttls=True, credentials=("alerts@example.com", "right-pw")
    ) as smtp:
        config = AlertConfig.from_mapping(
            smtp_settings(smtp, SMTP_USER="alerts@example.com", SMTP_PASS="wrong-pw")
        )
        dispatcher = AlertDispatcher(
            config, retry=FAST_RETRY, tls_context=certificate.client_context()
        )

        assert await dispatcher.dispatch(make_alert()) == {"email": False}

        assert smtp.messages == []
    assert smtp.failed_logins >= 1
    [line] = [record.getMessage() for record in caplog.records if "channel=email" in record.msg]
    assert "alert delivery failed" in line
    assert "attempts=1 " in line
    assert "535" in line and "Authentication credentials invalid" in line


# --- Slack and the webhook --------------------------------------------------------------------


async def test_slack_gets_a_message_with_text_and_blocks(http: HttpReceiver) -> None:
    config = AlertConfig.from_mapping(
        {"ALERTS_ENABLED": "true", "SLACK_WEBHOOK_URL": http.url(SLACK_PATH)}
    )

    result = await AlertDispatcher(config, retry=FAST_RETRY).dispatch(
        make_alert("Recovered", Severity.INFO, Transition.RESOLVED)
    )

    assert result == {"slack": True}
    [request] = http.to(SLACK_PATH)
    assert request.headers["Content-Type"] == "application/json"
    payload = request.json()
    assert payload["text"].startswith("[INFO] Recovered: ApiDeployment shop/orion-api")
    rendered = str(payload["blocks"])
    assert "The database is down" in rendered
    assert "resolved" in rendered


async def test_webhook_posts_the_alert_signed_per_standard_webhooks(http: HttpReceiver) -> None:
    config = AlertConfig.from_mapping(
        {
            "ALERTS_ENABLED": "true",
            "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH),
            "ALERT_WEBHOOK_SECRET": WHSEC,
        }
    )
    alert = make_alert()

    assert await AlertDispatcher(config, retry=FAST_RETRY).dispatch(alert) == {"webhook": True}

    [request] = http.to(WEBHOOK_PATH)
    assert request.headers["webhook-id"] == alert.id
    assert request.headers["webhook-signature"].startswith("v1,")
    assert Webhook(WHSEC).verify(request.body, request.headers) == alert.as_payload()
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==").verify(request.body, request.headers)


async def test_a_plain_string_secret_is_its_utf8_bytes_as_the_key(http: HttpReceiver) -> None:
    raw_secret = "tu-secret-opcional"
    config = AlertConfig.from_mapping(
        {
            "ALERTS_ENABLED": "true",
            "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH),
            "ALERT_WEBHOOK_SECRET": raw_secret,
        }
    )

    assert await AlertDispatcher(config, retry=FAST_RETRY).dispatch(make_alert()) == {
        "webhook": True
    }

    [request] = http.to(WEBHOOK_PATH)
    for receiver_secret in (standard_webhook_secret(raw_secret), raw_secret.encode("utf-8")):
        assert Webhook(receiver_secret).verify(request.body, request.headers)["reason"] == (
            "DatabaseDown"
        )


async def test_webhook_without_a_secret_is_sent_unsigned(http: HttpReceiver) -> None:
    config = AlertConfig.from_mapping(
        {"ALERTS_ENABLED": "true", "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH)}
    )
    alert = make_alert()

    assert await AlertDispatcher(config, retry=FAST_RETRY).dispatch(alert) == {"webhook": True}

    [request] = http.to(WEBHOOK_PATH)
    assert request.json() == alert.as_payload()
    assert "webhook-signature" not in request.headers


# --- failures, retries, timeouts --------------------------------------------------------------


async def test_a_webhook_failing_twice_is_delivered_on_the_third_attempt(
    http: HttpReceiver,
) -> None:
    http.script(WEBHOOK_PATH, Reply(500), Reply(503))
    config = AlertConfig.from_mapping(
        {
            "ALERTS_ENABLED": "true",
            "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH),
            "ALERT_WEBHOOK_SECRET": WHSEC,
        }
    )
    alert = make_alert(severity=Severity.WARNING)
    sent_before = counter("orion_alerts_sent_total", "webhook", "warning")
    failed_before = counter("orion_alerts_failed_total", "webhook", "warning")

    assert await AlertDispatcher(config, retry=FAST_RETRY).dispatch(alert) == {"webhook": True}

    attempts = http.to(WEBHOOK_PATH)
    assert len(attempts) == 3
    # The same id each time, so the receiver can drop duplicates; each attempt verifies.
    assert {request.headers["webhook-id"] for request in attempts} == {alert.id}
    assert Webhook(WHSEC).verify(attempts[-1].body, attempts[-1].headers)["id"] == alert.id
    assert counter("orion_alerts_sent_total", "webhook", "warning") == sent_before + 1
    assert counter("orion_alerts_failed_total", "webhook", "warning") == failed_before


async def test_a_broken_slack_fails_alone_and_the_others_still_deliver(
    http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    http.script(SLACK_PATH, then=Reply(500, "internal error"))
    config = AlertConfig.from_mapping(
        smtp_settings(
            smtp, SLACK_WEBHOOK_URL=http.url(SLACK_PATH), ALERT_WEBHOOK_URL=http.url(WEBHOOK_PATH)
        )
    )
    before = {
        (name, channel): counter(name, channel, "critical")
        for name in ("orion_alerts_sent_total", "orion_alerts_failed_total")
        for channel in ("email", "slack", "webhook")
    }

    result = await AlertDispatcher(config, retry=FAST_RETRY).dispatch(make_alert())

    assert result == {"email": True, "slack": False, "webhook": True}
    assert len(http.to(SLACK_PATH)) == 3  # every attempt was made
    assert len(http.to(WEBHOOK_PATH)) == 1
    assert len(smtp.messages) == 1

    def delta(name: str, channel: str) -> float:
        return counter(name, channel, "critical") - before[(name, channel)]

    assert delta("orion_alerts_failed_total", "slack") == 1
    assert delta("orion_alerts_sent_total", "slack") == 0
    assert delta("orion_alerts_sent_total", "email") == 1
    assert delta("orion_alerts_sent_total", "webhook") == 1


async def test_a_wrong_webhook_url_fails_at_once(http: HttpReceiver) -> None:
    http.script(WEBHOOK_PATH, then=Reply(404, "no such hook"))
    config = AlertConfig.from_mapping(
        {"ALERTS_ENABLED": "true", "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH)}
    )

    assert await AlertDispatcher(config, retry=FAST_RETRY).dispatch(make_alert()) == {
        "webhook": False
    }
    assert len(http.to(WEBHOOK_PATH)) == 1


async def test_a_hanging_webhook_does_not_delay_slack(http: HttpReceiver) -> None:
    http.script(WEBHOOK_PATH, then=Reply(200, delay_seconds=30))
    config = AlertConfig.from_mapping(
        {
            "ALERTS_ENABLED": "true",
            "SLACK_WEBHOOK_URL": http.url(SLACK_PATH),
            "ALERT_WEBHOOK_URL": http.url(WEBHOOK_PATH),
        }
    )
    dispatcher = AlertDispatcher(
        config,
        retry=RetryPolicy(attempts=2, initial_delay_seconds=0.01, max_delay_seconds=0.01),
        timeout_seconds=0.5,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()

    result = await dispatcher.dispatch(make_alert())

    elapsed = loop.time() - started
    assert result == {"slack": True, "webhook": False}
    [slack_request] = http.to(SLACK_PATH)
    assert slack_request.received_at - started < 0.3
    assert len(http.to(WEBHOOK_PATH)) == 2
    # Two attempts cut off at 0.5 s each: the hung receiver's 30 s do not count.
    assert 0.9 < elapsed < 2.0


# --- secrets ----------------------------------------------------------------------------------


async def test_no_password_secret_or_webhook_path_reaches_logs_or_results(
    http: HttpReceiver, certificate: SelfSignedCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_password = "Sm7p-Pa55-wrong"
    webhook_secret = "hook-signing-secret-789"
    # Both receivers fail with an error page that repeats the request path.
    http.script(SLACK_PATH, then=Reply(500, "no route for", echo_path=True))
    http.script(WEBHOOK_PATH, then=Reply(502, "bad gateway for", echo_path=True))
    caplog.set_level(logging.DEBUG, logger="orion_operator")
    with SmtpReceiver(
        certificate=certificate, starttls=True, credentials=("alerts@example.com", "other")
    ) as smtp:
        config = AlertConfig.from_mapping(
            smtp_settings(
                smtp,
                SMTP_USER="alerts@example.com",
                SMTP_PASS=smtp_password,
                SLACK_WEBHOOK_URL=http.url(SLACK_PATH),
                ALERT_WEBHOOK_URL=http.url(WEBHOOK_PATH) + "?token=queryToken000",
                ALERT_WEBHOOK_SECRET=webhook_secret,
            )
        )
        dispatcher = AlertDispatcher(
            config, retry=FAST_RETRY, tls_context=certificate.client_context()
        )

        result = await dispatcher.dispatch(make_alert())

        errors = []
        for channel in (SlackChannel(config), WebhookChannel(config)):
            with pytest.raises(ChannelError) as caught:
                await channel.send(make_alert())
            errors.append(str(caught.value))

    assert result == {"email": False, "slack": False, "webhook": False}
    ours = [record for record in caplog.records if record.name.startswith("orion_operator")]
    failures = [record for record in ours if "alert delivery failed" in record.getMessage()]
    assert len(failures) == 3
    # The logs still say where it failed: the host and the HTTP status.
    assert f"target=127.0.0.1:{http.port}" in caplog.text
    assert "HTTP 500" in caplog.text and "HTTP 502" in caplog.text
    exposed = "\n".join([caplog.text, repr(result), *errors, str(config), repr(config)])
    for secret in (
        smtp_password,
        webhook_secret,
        standard_webhook_secret(webhook_secret),
        SLACK_PATH,
        "slackTokenXyz123",
        WEBHOOK_PATH,
        "hookPathToken456",
        "queryToken000",
    ):
        assert secret not in exposed
