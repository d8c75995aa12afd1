"""Where alerts go: the runbook's ALERT_*, SMTP_* and SLACK_* variables as one typed model."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

# The runbook's variable names, in the order the runbook lists them.
VARIABLES = (
    "ALERTS_ENABLED",
    "ALERT_EMAIL",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USER",
    "SMTP_PASS",
    "SMTP_FROM",
    "SMTP_SECURE",
    "SLACK_WEBHOOK_URL",
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_SECRET",
)
WEBHOOK_SECRET_PREFIX = "whsec_"
IMPLICIT_TLS_PORT = 465


class AlertConfigError(ValueError):
    """Alert settings that cannot be used; the message names the variables, never their values."""


def _http_url(value: SecretStr | None, variable: str) -> SecretStr | None:
    if value is None:
        return None
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value itself may be a credential (Slack's URL is), so it stays out of the message.
        raise ValueError(f"{variable} must be an http:// or https:// URL with a host")
    return value


def webhook_signing_key(secret: str) -> bytes:
    """The HMAC key for ALERT_WEBHOOK_SECRET.

    A secret in the Standard Webhooks form (`whsec_` + base64) is decoded; any other string is
    used as the UTF-8 bytes of itself. A receiver verifies a raw secret with
    `standardwebhooks.Webhook(secret.encode())` or, equivalently, with the `whsec_` form that
    `standard_webhook_secret(secret)` returns.
    """
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        encoded = secret[len(WEBHOOK_SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "ALERT_WEBHOOK_SECRET starts with whsec_ but the rest is not base64"
            ) from None
        if not key:
            raise ValueError("ALERT_WEBHOOK_SECRET is whsec_ with an empty key")
        return key
    return secret.encode("utf-8")


def standard_webhook_secret(secret: str) -> str:
    """The `whsec_...` form of ALERT_WEBHOOK_SECRET, for receivers' Standard Webhooks libraries."""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        return secret
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(webhook_signing_key(secret)).decode("ascii")


class AlertConfig(BaseModel):
    """Alert delivery settings.

    With `enabled` false (the default) alerts are only Kubernetes Events, which are posted
    elsewhere; the dispatcher sends nothing. Each channel is on only when its settings are there:
    e-mail needs ALERT_EMAIL and SMTP_HOST, Slack needs SLACK_WEBHOOK_URL, the webhook needs
    ALERT_WEBHOOK_URL. Credentials and URLs (a Slack webhook URL is a credential) are SecretStr,
    so printing the config shows `**********`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    enabled: bool = Field(False, alias="ALERTS_ENABLED")
    email_recipients: tuple[str, ...] = Field((), alias="ALERT_EMAIL")
    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT", ge=1, le=65535)
    smtp_user: str | None = Field(None, alias="SMTP_USER")
    smtp_password: SecretStr | None = Field(None, alias="SMTP_PASS")
    smtp_from: str | None = Field(None, alias="SMTP_FROM")
    smtp_implicit_tls: bool | None = Field(
        None,
        alias="SMTP_SECURE",
        description="TLS from the first byte (SMTPS); default: only on port 465. "
        "Otherwise STARTTLS is used whenever the server offers it.",
    )
    slack_webhook_url: SecretStr | None = Field(None, alias="SLACK_WEBHOOK_URL")
    webhook_url: SecretStr | None = Field(None, alias="ALERT_WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(None, alias="ALERT_WEBHOOK_SECRET")

    @field_validator("email_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: Any) -> Any:
        if isinstance(value, str):
            addresses = [address for _, address in getaddresses([value]) if address]
            if any("@" not in address for address in addresses):
                raise ValueError("ALERT_EMAIL must be e-mail addresses separated by commas")
            return tuple(addresses)
        return value

    @field_validator("smtp_from")
    @classmethod
    def _check_from(cls, value: str | None) -> str | None:
        if value is not None and "@" not in parseaddr(value)[1]:
            raise ValueError('SMTP_FROM must be an address, e.g. "Orion <noreply@example.com>"')
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _check_slack_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _http_url(value, "SLACK_WEBHOOK_URL")

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _http_url(value, "ALERT_WEBHOOK_URL")

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            webhook_signing_key(value.get_secret_value())
        return value

    @classmethod
    def from_mapping(cls, *sources: Mapping[str, str]) -> AlertConfig:
        """Read the runbook's variables from `os.environ`, a decoded Secret's data, or both.

        With several sources, later ones win: call `from_mapping(os.environ, secret_data)` so the
        Secret overrides the operator's environment (a changed Secret then takes effect without
        redeploying the operator). Empty values count as unset and override nothing. Other keys
        are ignored. Raises AlertConfigError naming the bad variables, never their values.
        """
        merged: dict[str, str] = {}
        for source in sources:
            for name in VARIABLES:
                value = source.get(name)
                if value is not None and value.strip():
                    merged[name] = value.strip()
        try:
            return cls.model_validate(merged)
        except ValidationError as error:
            problems = []
            for detail in error.errors(include_url=False, include_input=False):
                variable = ".".join(str(part) for part in detail["loc"])
                message = str(detail["msg"]).removeprefix("Value error, ")
                problems.append(f"{variable}: {message}")
            raise AlertConfigError("invalid alert settings: " + "; ".join(problems)) from None

    @property
    def implicit_tls(self) -> bool:
        if self.smtp_implicit_tls is not None:
            return self.smtp_implicit_tls
        return self.smtp_port == IMPLICIT_TLS_PORT

    @property
    def sender(self) -> str | None:
        """SMTP_FROM, else SMTP_USER when it is an address (as many providers require)."""
        if self.smtp_from:
            return self.smtp_from
        if self.smtp_user and "@" in self.smtp_user:
            return str(Address(addr_spec=self.smtp_user))
        return None

    @property
    def email_enabled(self) -> bool:
        return bool(self.email_recipients and self.smtp_host and self.sender)

    @property
    def slack_enabled(self) -> bool:
        return self.slack_webhook_url is not None

    @property
    def webhook_enabled(self) -> bool:
        return self.webhook_url is not None

    def incomplete_channels(self) -> list[str]:
        """Channels that are half configured (and so off), each said in one sentence."""
        problems = []
        smtp_set = any((self.smtp_host, self.smtp_user, self.smtp_password, self.smtp_from))
        if self.email_recipients and not self.smtp_host:
            problems.append("ALERT_EMAIL is set but SMTP_HOST is not: no e-mail alerts")
        elif smtp_set and not self.email_recipients:
            problems.append("SMTP_* is set but ALERT_EMAIL is not: no e-mail alerts")
        elif self.email_recipients and not self.sender:
            problems.append(
                "ALERT_EMAIL is set but neither SMTP_FROM nor an address in SMTP_USER says "
                "who sends: no e-mail alerts"
            )
        if self.smtp_password is not None and not self.smtp_user:
            problems.append("SMTP_PASS is set without SMTP_USER: the password is not used")
        if self.webhook_secret is not None and self.webhook_url is None:
            problems.append("ALERT_WEBHOOK_SECRET is set but ALERT_WEBHOOK_URL is not")
        return problems

    def secret_values(self) -> list[str]:
        """Every string that must not reach a log: credentials, webhook URLs and their paths."""
        values: list[str] = []
        if self.smtp_password is not None:
            values.append(self.smtp_password.get_secret_value())
        if self.webhook_secret is not None:
            secret = self.webhook_secret.get_secret_value()
            values += [secret, standard_webhook_secret(secret)]
            values.append(standard_webhook_secret(secret).removeprefix(WEBHOOK_SECRET_PREFIX))
        for url in (self.slack_webhook_url, self.webhook_url):
            if url is not None:
                values += url_secrets(url.get_secret_value())
        # Longest first, so a URL is masked whole before its path is.
        return sorted({value for value in values if value}, key=len, reverse=True)


def url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that can carry a token: all of it, its path and query."""
    parts = urlsplit(url)
    values = [url]
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(parts.path) > 1:
        values += [path_and_query, parts.path]
    if parts.query:
        values.append(parts.query)
    if parts.password:
        values.append(parts.password)
    return values


def url_host(url: str) -> str:
    """What may be said about a webhook URL in a log: its host (and port when not the default)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host
