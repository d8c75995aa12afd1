"""Reconcile every known object again at an interval, from one loop with a few workers.

A kopf timer per object costs an asyncio task and its bookkeeping for each object (about
54 KiB per Tenant, see docs/performance.md) and fires with no bound on how many run at
once, so at thousands of objects the timers crowd out new objects. One loop keeps a
timestamp per object instead, and runs at most `concurrency` resyncs at a time: when the
machine cannot keep up with the interval, resyncs come late instead of piling up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
Key = TypeVar("Key", bound=Hashable)


class PeriodicResync(Generic[Key]):
    def __init__(
        self,
        interval: float,
        concurrency: int = 4,
        *,
        tick: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.concurrency = concurrency
        self.tick = tick
        self._clock = clock
        self._last: dict[Key, float] = {}

    def touch(self, key: Key) -> None:
        """`key` was just reconciled (or is known): its next resync is an interval from now."""
        self._last[key] = self._clock()

    def forget(self, key: Key) -> None:
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)

    def due(self) -> list[Key]:
        """The keys whose interval has passed, the longest-waiting first."""
        now = self._clock()
        waiting = [(last, key) for key, last in self._last.items() if now - last >= self.interval]
        waiting.sort(key=lambda pair: pair[0])
        return [key for _, key in waiting]

    async def run(self, resync: Callable[[Key], Awaitable[bool]]) -> None:
        """Forever: resync what is due. `resync` returns False when the object is gone."""
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()

        async def one(key: Key) -> None:
            try:
                if not await resync(key):
                    self.forget(key)
            except Exception:  # one object's failure must not stop the others' resyncs
                logger.exception("resync of %s failed", key)
            finally:
                slots.release()

        try:
            while True:
                for key in self.due():
                    await slots.acquire()
                    if key not in self._last:  # forgotten while waiting for a slot
                        slots.release()
                        continue
                    self.touch(key)
                    task = asyncio.create_task(one(key))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.sleep(self.tick)
        finally:
            for task in running:
                task.cancel()
