"""Alerts leave in the background: a slow channel never delays the next probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from orion_operator.alerts.model import Alert

logger = logging.getLogger(__name__)

Dispatch = Callable[[Alert], Coroutine[Any, Any, object]]


class BackgroundAlertSender:
    """Runs `dispatch(alert)` as tasks; `dispatch` is None when ALERTS_ENABLED is off."""

    def __init__(self, dispatch: Dispatch | None) -> None:
        self._dispatch = dispatch
        self._pending: set[asyncio.Task[object]] = set()

    def submit(self, alert: Alert) -> None:
        if self._dispatch is None:
            return
        task = asyncio.create_task(self._dispatch(alert), name=f"alert-{alert.id}")
        self._pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("alert dispatch crashed: %s", type(task.exception()).__name__)

    async def aclose(self, timeout_seconds: float = 30) -> None:
        """Give in-flight alerts a chance to go out before the operator stops."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=timeout_seconds)
