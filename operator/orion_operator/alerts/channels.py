"""The ways an alert leaves the operator: e-mail, a Slack incoming webhook, a signed webhook.

Each channel's `send` delivers one alert once or raises ChannelError, whose message is safe to
log: it names the channel and the server's host, never a password, a webhook secret or a webhook
URL's path (Slack's URL is itself the credential). Retries and timeouts around `send` are the
dispatcher's job.
"""

from __future__ import annotations

import datetime
import json
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol

import aiohttp
import aiosmtplib
from standardwebhooks import Webhook

from orion_operator.alerts.config import (
    AlertConfig,
    url_host,
    url_secrets,
    webhook_signing_key,
)
from orion_operator.alerts.model import Alert, Severity
from orion_operator.redaction import redact

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "orion-operator"
# Server answers worth trying again; any other 4xx means the request itself is wrong.
RETRYABLE_HTTP_STATUSES = frozenset({408, 425, 429})
_ERROR_BODY_CHARS = 200
_SLACK_SECTION_CHARS = 2900  # Slack rejects section text over 3000 characters
_SLACK_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":large_green_circle:",
}
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ChannelError(Exception):
    """A delivery that failed. The message is safe to log; `retryable` is False when trying
    again cannot help (a refused login, a rejected recipient, an HTTP 4xx)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class AlertChannel(Protocol):
    """One delivery channel. `target` says where it delivers without revealing a secret."""

    name: str
    target: str
    timeout_seconds: float

    async def send(self, alert: Alert) -> None: ...


def alert_subject(alert: Alert) -> str:
    """`[CRITICAL] DatabaseDown: ApiDeployment shop/api`."""
    return f"[{alert.severity.value.upper()}] {alert.reason}: {alert.subject}"


def _occurred_at_utc(alert: Alert) -> str:
    moment = alert.occurred_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def alert_text(alert: Alert) -> str:
    """The plain-text body: what happened, to which object, and the probe's details."""
    lines = [
        alert.title,
        "",
        alert.message,
        "",
        f"Object:    {alert.subject}",
        f"Check:     {alert.check}",
        f"Severity:  {alert.severity.value}",
        f"State:     {alert.transition.value}",
        f"Reason:    {alert.reason}",
        f"Occurred:  {_occurred_at_utc(alert)}",
        f"Alert ID:  {alert.id}",
    ]
    if alert.details:
        lines += ["", "Details:"]
        lines += [f"  {key}: {value}" for key, value in sorted(alert.details.items())]
    return "\n".join(lines) + "\n"


class EmailChannel:
    """E-mail through SMTP: STARTTLS whenever the server offers it (or TLS from the first byte
    on port 465 / SMTP_SECURE=true), login only when SMTP_USER is set."""

    name = "email"

    def __init__(
        self,
        config: AlertConfig,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not config.email_enabled or config.smtp_host is None or config.sender is None:
            raise ValueError("e-mail alerts need ALERT_EMAIL, SMTP_HOST and SMTP_FROM")
        self._host = config.smtp_host
        self._port = config.smtp_port
        self._recipients = config.email_recipients
        self._sender = config.sender
        self._username = config.smtp_user
        self._password = config.smtp_password
        self._implicit_tls = config.implicit_tls
        self._tls_context = tls_context
        self.timeout_seconds = timeout_seconds
        self.target = f"{self._host}:{self._port}"

    def build_message(self, alert: Alert, now: datetime.datetime | None = None) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = alert_subject(alert)
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Date"] = format_datetime(now or datetime.datetime.now(datetime.UTC))
        # Derived from the alert id, so a retried delivery is recognisably the same message.
        domain = parseaddr(self._sender)[1].rpartition("@")[2] or "orion-operator"
        local_part = _MESSAGE_ID_UNSAFE.sub("-", alert.id) or "alert"
        message["Message-ID"] = f"<{local_part}@{domain}>"
        message["X-Orion-Alert-Id"] = alert.id
        message["X-Orion-Severity"] = alert.severity.value
        message.set_content(alert_text(alert))
        return message

    async def send(self, alert: Alert) -> None:
        password = self._password.get_secret_value() if self._password else None
        try:
            await aiosmtplib.send(
                self.build_message(alert),
                hostname=self._host,
                port=self._port,
                username=self._username or None,
                password=password if self._username else None,
                use_tls=self._implicit_tls,
                start_tls=False if self._implicit_tls else None,  # None: when offered
                tls_context=self._tls_context,
                timeout=self.timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as error:
            # 5xx is permanent (bad login, recipient refused); 4xx asks us to come back later.
            detail = redact(f"{error.code} {error.message}", [password or ""])
            raise ChannelError(
                f"SMTP server {self.target} refused the alert: {detail}",
                retryable=error.code < 500,
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = ", ".join(sorted(recipient.recipient for recipient in error.recipients))
            raise ChannelError(
                f"SMTP server {self.target} refused every recipient ({refused})", retryable=False
            ) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            detail = redact(str(error) or type(error).__name__, [password or ""])
            raise ChannelError(f"SMTP server {self.target}: {detail}") from None


class _HttpChannel:
    """POSTs JSON with a total timeout; any answer other than 2xx is a failure."""

    name: str
    label: str

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None,
        timeout_seconds: float,
    ) -> None:
        self._url = url
        self._session = session
        self._secrets = url_secrets(url)
        self.timeout_seconds = timeout_seconds
        self.target = url_host(url)

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            if self._session is not None:
                await self._post_with(self._session, body, headers, timeout)
            else:
                async with aiohttp.ClientSession() as session:
                    await self._post_with(session, body, headers, timeout)
        except ChannelError:
            raise
        except TimeoutError:
            raise ChannelError(
                f"{self.label} at {self.target} did not answer within {self.timeout_seconds:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            detail = self._redact(str(error) or type(error).__name__)
            raise ChannelError(f"{self.label} at {self.target}: {detail}") from None

    async def _post_with(
        self,
        session: aiohttp.ClientSession,
        body: bytes,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> None:
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        # A webhook that redirects would turn the POST into a GET; treat it as a failure instead.
        async with session.post(
            self._url, data=body, headers=all_headers, timeout=client_timeout, allow_redirects=False
        ) as response:
            if 200 <= response.status < 300:
                return
            answer = (await response.text(errors="replace"))[:_ERROR_BODY_CHARS].strip()
            status = response.status
            raise ChannelError(
                self._redact(
                    f"{self.label} at {self.target} answered HTTP {status}"
                    + (f": {answer}" if answer else "")
                ),
                retryable=status >= 500 or status in RETRYABLE_HTTP_STATUSES,
            )

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def slack_payload(alert: Alert) -> dict[str, object]:
    """Slack's incoming-webhook body: `text` for notifications, `blocks` for the message."""

    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    headline = f"{_SLACK_EMOJI[alert.severity]} *{escape(alert_subject(alert))}*"
    body = f"{headline}\n{escape(alert.title)}\n{escape(alert.message)}"
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:_SLACK_SECTION_CHARS]}}
    ]
    if alert.details:
        fields = [
            {"type": "mrkdwn", "text": f"*{escape(key)}*\n{escape(value)}"[:_SLACK_SECTION_CHARS]}
            for key, value in sorted(alert.details.items())[:10]  # Slack allows 10 fields
        ]
        blocks.append({"type": "section", "fields": fields})
    context = (
        f"{escape(str(alert.subject))} · check {escape(alert.check)} · "
        f"{alert.transition.value} · {_occurred_at_utc(alert)} · id {escape(alert.id)}"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {
        "text": f"{alert_subject(alert)} — {alert.title}\n{alert.message}",
        "blocks": blocks,
    }


class SlackChannel(_HttpChannel):
    """A Slack incoming webhook (SLACK_WEBHOOK_URL)."""

    name = "slack"
    label = "Slack webhook"

    def __init__(
        self,
        config: AlertConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if config.slack_webhook_url is None:
            raise ValueError("Slack alerts need SLACK_WEBHOOK_URL")
        super().__init__(
            config.slack_webhook_url.get_secret_value(),
            session=session,
            timeout_seconds=timeout_seconds,
        )

    async def send(self, alert: Alert) -> None:
        body = json.dumps(slack_payload(alert), ensure_ascii=False).encode("utf-8")
        await self._post(body, {})


class WebhookChannel(_HttpChannel):
    """A generic webhook (ALERT_WEBHOOK_URL) receiving `Alert.as_payload()` as JSON.

    With ALERT_WEBHOOK_SECRET the request is signed per the Standard Webhooks spec: headers
    `webhook-id` (the alert id, the same on every retry, so receivers can drop duplicates),
    `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` + base64 of
    HMAC-SHA256 over `id.timestamp.body`). The key is the decoded base64 of a `whsec_...` secret,
    or the UTF-8 bytes of any other secret (see `config.webhook_signing_key`).
    """

    name = "webhook"
    label = "Alert webhook"

    def __init__(
        self,
        config: AlertConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if config.webhook_url is None:
            raise ValueError("webhook alerts need ALERT_WEBHOOK_URL")
        super().__init__(
            config.webhook_url.get_secret_value(),
            session=session,
            timeout_seconds=timeout_seconds,
        )
        secret = config.webhook_secret
        self._signer = Webhook(webhook_signing_key(secret.get_secret_value())) if secret else None

    def signed_headers(
        self, alert: Alert, body: str, now: datetime.datetime | None = None
    ) -> dict[str, str]:
        moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
        headers = {"webhook-id": alert.id, "webhook-timestamp": str(int(moment.timestamp()))}
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(alert.id, moment, body)
        return headers

    async def send(self, alert: Alert) -> None:
        body = json.dumps(alert.as_payload(), ensure_ascii=False, separators=(",", ":"))
        # Signed afresh on each attempt: receivers reject timestamps older than a few minutes.
        await self._post(body.encode("utf-8"), self.signed_headers(alert, body))
