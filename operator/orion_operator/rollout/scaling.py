"""Scaling decisions: replicas within the bounds, and PostgreSQL connections a scale-up needs."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaTarget:
    """What the Deployment is given for a requested replica count (spec.replicas)."""

    requested: int
    minimum: int
    maximum: int
    replicas: int

    @property
    def clamped(self) -> bool:
        return self.replicas != self.requested

    @property
    def reason(self) -> str:
        if self.requested > self.maximum:
            return "AboveMaxReplicas"
        if self.requested < self.minimum:
            return "BelowMinReplicas"
        return "WithinBounds"

    @property
    def message(self) -> str:
        if self.requested > self.maximum:
            return (
                f"spec.replicas {self.requested} is above spec.maxReplicas {self.maximum}: "
                f"the Deployment runs {self.replicas}"
            )
        if self.requested < self.minimum:
            return (
                f"spec.replicas {self.requested} is below spec.minReplicas {self.minimum}: "
                f"the Deployment runs {self.replicas}"
            )
        return f"spec.replicas {self.requested} is within [{self.minimum}, {self.maximum}]"


def clamp_replicas(requested: int, minimum: int, maximum: int) -> ReplicaTarget:
    """`requested` limited to [minimum, maximum]; the schema guarantees minimum <= maximum."""
    return ReplicaTarget(requested, minimum, maximum, max(minimum, min(requested, maximum)))


@dataclass(frozen=True)
class ConnectionUsage:
    """Client connections in pg_stat_activity against the server's max_connections."""

    in_use: int
    max_connections: int

    @property
    def used_percent(self) -> int:
        if self.max_connections <= 0:
            return 0
        return round(100 * self.in_use / self.max_connections)


@dataclass(frozen=True)
class ScaleUpEstimate:
    """The connections a scale-up would leave in use, against the allowed share."""

    current_replicas: int
    target_replicas: int
    projected: int
    limit: int
    usage: ConnectionUsage

    @property
    def over_limit(self) -> bool:
        return self.projected > self.limit

    @property
    def message(self) -> str:
        verdict = "above" if self.over_limit else "within"
        return (
            f"scaling from {self.current_replicas} to {self.target_replicas} replicas would use "
            f"about {self.projected} of {self.usage.max_connections} PostgreSQL connections "
            f"({self.usage.in_use} in use now), {verdict} the limit of {self.limit}"
        )


def estimate_scale_up(
    usage: ConnectionUsage,
    *,
    current_replicas: int,
    target_replicas: int,
    connections_per_replica: int,
    max_share: float,
) -> ScaleUpEstimate | None:
    """None unless replicas grow. Connections in use now stay; each new replica adds its pool."""
    if target_replicas <= current_replicas:
        return None
    added = connections_per_replica * (target_replicas - current_replicas)
    return ScaleUpEstimate(
        current_replicas=current_replicas,
        target_replicas=target_replicas,
        projected=usage.in_use + added,
        limit=math.floor(max_share * usage.max_connections),
        usage=usage,
    )
