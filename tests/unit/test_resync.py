"""The periodic resync: what is due, in what order, and how many run at once."""

from __future__ import annotations

import asyncio

from orion_operator.kube.resync import PeriodicResync


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_due_an_interval_after_its_last_reconcile_longest_waiting_first() -> None:
    clock = Clock()
    resync = PeriodicResync[str](60, clock=clock)
    resync.touch("a")
    clock.now = 10
    resync.touch("b")
    clock.now = 59
    assert resync.due() == []
    clock.now = 70
    assert resync.due() == ["a", "b"]
    resync.touch("a")  # reconciled by a change: waits a whole interval again
    assert resync.due() == ["b"]
    resync.forget("b")
    assert resync.due() == [] and len(resync) == 1


async def test_run_bounds_concurrency_forgets_gone_objects_and_survives_failures() -> None:
    resync = PeriodicResync[int](0.05, concurrency=2, tick=0.01)
    for key in range(6):
        resync.touch(key)
    in_flight, most, seen = 0, 0, []

    async def one(key: int) -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        seen.append(key)
        if key == 3:
            raise RuntimeError("a broken object")
        return key != 5  # 5 is gone

    task = asyncio.create_task(resync.run(one))
    await asyncio.sleep(0.5)
    task.cancel()
    assert most == 2
    assert len(resync) == 5  # 3 failed but is kept for the next round
    assert seen.count(0) >= 2  # resynced again after its interval
