"""Whether kopf peering has paused this operator, for the loops kopf does not pause itself.

kopf pauses its handlers while a live peer has a higher priority, but a background loop of
ours (the Tenant resync) would go on writing beside the active replica. The rule is kopf's, read
from the same peering object: a peer is live until `lastseen + lifetime`, and one with a higher
priority outranks us. kopf does not tell its identity to handlers, so a peer of our own priority
is taken to be us: replicas draw random priorities (handlers/lifecycle.py), and kopf pauses
peers of equal priority anyway.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

KopfPeering = create_namespaced_resource("kopf.dev", "v1", "KopfPeering", "kopfpeerings")
ClusterKopfPeering = create_global_resource(
    "kopf.dev", "v1", "ClusterKopfPeering", "clusterkopfpeerings"
)


def outranked(peers: Mapping[str, Any], priority: int, now: datetime.datetime) -> bool:
    """Whether a live peer in a peering object's status has a higher priority than `priority`."""
    for info in peers.values():
        if not isinstance(info, Mapping) or int(info.get("priority", 0)) <= priority:
            continue
        try:
            lastseen = datetime.datetime.fromisoformat(str(info["lastseen"]))
        except (KeyError, ValueError):
            continue
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=datetime.UTC)
        if lastseen + datetime.timedelta(seconds=int(info.get("lifetime", 60))) > now:
            return True
    return False


class PeeringState:
    """`paused(namespace)`, read from the peering objects at most every `ttl` seconds."""

    def __init__(
        self,
        kube: AsyncClient,
        name: str,
        priority: int,
        *,
        standalone: bool,
        clusterwide: bool,
        ttl: float = 5.0,
    ) -> None:
        self._kube, self._name, self._priority = kube, name, priority
        self._standalone, self._clusterwide, self._ttl = standalone, clusterwide, ttl
        self._known: dict[str | None, tuple[float, bool]] = {}

    async def paused(self, namespace: str) -> bool:
        if self._standalone:
            return False
        # Namespaced operators peer per namespace, cluster-wide ones once for the cluster.
        return await self._outranked_in(None if self._clusterwide else namespace)

    async def _outranked_in(self, namespace: str | None) -> bool:
        known = self._known.get(namespace)
        if known is not None and time.monotonic() - known[0] < self._ttl:
            return known[1]
        status: Mapping[str, Any] = {}
        try:
            # Listed, not read: list and watch are what kopf's own peering needs.
            objects = (
                self._kube.list(KopfPeering, namespace=namespace)
                if namespace is not None
                else self._kube.list(ClusterKopfPeering)
            )
            async for peering in objects:
                if peering.metadata is not None and peering.metadata.name == self._name:
                    status = peering.get("status") or {}
        except ApiError as error:
            if error.status.code != 404:  # 404: no peering CRD, so no peers
                raise
        result = outranked(status, self._priority, datetime.datetime.now(datetime.UTC))
        self._known[namespace] = (time.monotonic(), result)
        return result
