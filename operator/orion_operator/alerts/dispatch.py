"""Send one alert to every enabled channel at once, each with its own retries and timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from orion_operator import metrics
from orion_operator.alerts.channels import (
    DEFAULT_TIMEOUT_SECONDS,
    AlertChannel,
    ChannelError,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)
from orion_operator.alerts.config import AlertConfig
from orion_operator.alerts.model import Alert
from orion_operator.redaction import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per channel and alert; the waits between them double up to the maximum."""

    attempts: int = 3
    initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ChannelError):
        return error.retryable
    # Cancellation is not a delivery failure; anything else from a channel may be transient.
    return isinstance(error, Exception)


def _kv(**fields: object) -> str:
    """`key=value` pairs; values with spaces, quotes or `=` are JSON-quoted."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(char in text for char in ' "=\n\t'):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def build_channels(
    config: AlertConfig,
    *,
    session: aiohttp.ClientSession | None = None,
    tls_context: ssl.SSLContext | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[AlertChannel]:
    """The channels the settings turn on; none at all while ALERTS_ENABLED is false."""
    if not config.enabled:
        return []
    channels: list[AlertChannel] = []
    if config.email_enabled:
        channels.append(
            EmailChannel(config, tls_context=tls_context, timeout_seconds=timeout_seconds)
        )
    if config.slack_enabled:
        channels.append(SlackChannel(config, session=session, timeout_seconds=timeout_seconds))
    if config.webhook_enabled:
        channels.append(WebhookChannel(config, session=session, timeout_seconds=timeout_seconds))
    return channels


class AlertDispatcher:
    """Delivers alerts to e-mail, Slack and the webhook, concurrently.

    A channel that fails or hangs does not hold up the others: each runs in its own task, each
    attempt is cut off after the channel's `timeout_seconds`, and failed attempts are retried
    with exponential backoff (`retry`). Outcomes are counted in orion_alerts_sent_total and
    orion_alerts_failed_total and logged as one key=value line each, with credentials and
    webhook URLs masked (only the host is named).

    `session` is an aiohttp session to share between HTTP channels (the caller closes it); without
    one each delivery opens its own. `tls_context` is used for SMTP (e.g. a private CA).
    `channels` replaces the ones built from `config`; with ALERTS_ENABLED off nothing is sent
    either way.
    """

    def __init__(
        self,
        config: AlertConfig,
        *,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        tls_context: ssl.SSLContext | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        channels: Sequence[AlertChannel] | None = None,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        if channels is None:
            channels = build_channels(
                config, session=session, tls_context=tls_context, timeout_seconds=timeout_seconds
            )
        self.channels: tuple[AlertChannel, ...] = tuple(channels) if config.enabled else ()
        self._secrets = config.secret_values()
        if config.enabled:
            for problem in config.incomplete_channels():
                log.warning(_kv(event="alert channel off", problem=problem))
            names = ",".join(channel.name for channel in self.channels) or "none"
            log.info(_kv(event="alert channels", channels=names))

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self.channels]

    async def __call__(self, alert: Alert) -> dict[str, bool]:
        return await self.dispatch(alert)

    async def dispatch(self, alert: Alert) -> dict[str, bool]:
        """Deliver `alert` to every enabled channel; whether each one got it, by channel name."""
        if not self.channels:
            return {}
        outcomes = await asyncio.gather(
            *(self._deliver(channel, alert) for channel in self.channels)
        )
        pairs = zip(self.channels, outcomes, strict=True)
        return {channel.name: delivered for channel, delivered in pairs}

    async def _deliver(self, channel: AlertChannel, alert: Alert) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=wait_exponential(
                multiplier=self.retry.initial_delay_seconds, max=self.retry.max_delay_seconds
            ),
            retry=retry_if_exception(_retryable),
            before_sleep=lambda state: self._log_retry(channel, alert, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._attempt(channel, alert)
        except Exception as error:
            metrics.alerts_failed_total.labels(channel.name, alert.severity.value).inc()
            log.error(
                self._outcome_line(
                    "alert delivery failed", channel, alert, attempts, loop.time() - started
                )
                + " "
                + _kv(error=self._describe(error))
            )
            return False
        metrics.alerts_sent_total.labels(channel.name, alert.severity.value).inc()
        log.info(
            self._outcome_line("alert delivered", channel, alert, attempts, loop.time() - started)
        )
        return True

    async def _attempt(self, channel: AlertChannel, alert: Alert) -> None:
        try:
            async with asyncio.timeout(channel.timeout_seconds):
                await channel.send(alert)
        except TimeoutError:
            raise ChannelError(
                f"{channel.name} at {channel.target} did not finish within "
                f"{channel.timeout_seconds:g} s"
            ) from None

    def _log_retry(self, channel: AlertChannel, alert: Alert, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug(
            _kv(
                event="alert delivery retry",
                channel=channel.name,
                target=channel.target,
                alert_id=alert.id,
                attempt=state.attempt_number,
                wait_seconds=f"{wait:.2f}",
                error=self._describe(error) if error else "",
            )
        )

    def _outcome_line(
        self,
        event: str,
        channel: AlertChannel,
        alert: Alert,
        attempts: int,
        elapsed_seconds: float,
    ) -> str:
        return _kv(
            event=event,
            channel=channel.name,
            target=channel.target,
            alert_id=alert.id,
            reason=alert.reason,
            severity=alert.severity.value,
            transition=alert.transition.value,
            object=alert.subject,
            attempts=attempts,
            duration_ms=round(elapsed_seconds * 1000),
        )

    def _describe(self, error: BaseException) -> str:
        # Channels already mask what they know; this catches anything a channel missed.
        text = str(error) or type(error).__name__
        if not isinstance(error, ChannelError):
            text = f"{type(error).__name__}: {text}"
        return redact(text, self._secrets)


def build_dispatcher(
    environ: Mapping[str, str],
    secret_data: Mapping[str, str] | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    tls_context: ssl.SSLContext | None = None,
    retry: RetryPolicy | None = None,
) -> AlertDispatcher | None:
    """The dispatcher for these settings, or None when there is nothing to send to.

    None means ALERTS_ENABLED is off or no channel is configured: alerts are then only the
    Kubernetes Events posted elsewhere. Values in `secret_data` (a decoded Secret) win over
    `environ`. Raises AlertConfigError, naming the variable, on settings that cannot work.
    """
    config = AlertConfig.from_mapping(environ, *([secret_data] if secret_data else []))
    if not config.enabled:
        log.info(_kv(event="alert channels", channels="none", why="ALERTS_ENABLED is not true"))
        return None
    dispatcher = AlertDispatcher(config, retry=retry, session=session, tls_context=tls_context)
    return dispatcher if dispatcher.channels else None
