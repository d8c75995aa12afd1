"""kopf's peering rule, as the operator's own loops read it to pause beside the active peer."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

from orion_operator.kube.peering import PeeringState, outranked

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def peer(priority: int, seen_seconds_ago: float, lifetime: int = 20) -> dict[str, object]:
    lastseen = NOW - datetime.timedelta(seconds=seen_seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}


def test_a_live_peer_with_a_higher_priority_outranks_us() -> None:
    assert outranked({"other": peer(900, 5), "us": peer(100, 1)}, 100, NOW)


def test_lower_equal_or_dead_peers_do_not() -> None:
    peers = {
        "lower": peer(50, 1),
        "us": peer(100, 1),  # our own entry: kopf gives handlers no identity to tell it apart
        "dead": peer(900, 30),  # lastseen + lifetime is past: kopf takes it for gone
        "broken": {"priority": 999, "lastseen": "not a time"},
    }
    assert not outranked(peers, 100, NOW)
    assert not outranked({}, 100, NOW)


class FakeKube:
    """Serves peering objects to `list`, counting the calls (the API server is not needed)."""

    def __init__(self, objects: dict[str | None, list[dict[str, Any]]]) -> None:
        self.objects, self.calls = objects, 0

    def list(self, resource: Any, namespace: str | None = None) -> AsyncIterator[Any]:
        self.calls += 1
        items = self.objects.get(namespace, [])

        async def listing() -> AsyncIterator[Any]:
            for item in items:
                yield resource.from_dict(item)

        return listing()


def peering(status: dict[str, Any], name: str = "orion-operator") -> dict[str, Any]:
    return {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}, "status": status}


def live(priority: int) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {"priority": priority, "lifetime": 60, "lastseen": now.isoformat()}


async def test_paused_reads_the_namespace_peering_of_a_namespaced_operator_and_caches_it() -> None:
    kube = FakeKube(
        {
            "team-a": [peering({"them": live(900)}), peering({"x": live(999)}, name="other-op")],
            "team-b": [peering({"them": live(50)})],
        }
    )
    state = PeeringState(kube, "orion-operator", 100, standalone=False, clusterwide=False)  # type: ignore[arg-type]
    assert await state.paused("team-a")
    assert not await state.paused("team-b")
    assert await state.paused("team-a") and kube.calls == 2  # read again only after the ttl


async def test_a_cluster_wide_operator_reads_the_cluster_peering_and_standalone_never_pauses() -> (
    None
):
    kube = FakeKube({None: [peering({"them": live(900)})]})
    clusterwide = PeeringState(kube, "orion-operator", 100, standalone=False, clusterwide=True)  # type: ignore[arg-type]
    assert await clusterwide.paused("any")
    alone = PeeringState(kube, "orion-operator", 100, standalone=True, clusterwide=True)  # type: ignore[arg-type]
    assert not await alone.paused("any")
