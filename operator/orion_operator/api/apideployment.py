"""The ApiDeployment custom resource: the Orion API, its health probe and its alerts.

This part covers health: probing the /health contract, triage of the dependencies and alerting.
"""

from __future__ import annotations

import datetime
import re
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.alerts.state import CheckState
from orion_operator.api.common import Conditions, DatabaseRef, SecretKeyRef

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> datetime.timedelta:
    """Go-style durations as Kubernetes users write them: 30s, 5m, 4h, 1h30m."""
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return datetime.timedelta(seconds=seconds)


class HealthCheckSpec(schema.BaseModel):
    url: schema.Optional[
        Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    ] = Field(
        None,
        description=(
            "Probe this URL instead of the owned Service "
            "(http://<name>.<namespace>.svc:<port><path>)."
        ),
    )
    path: Annotated[str, StringConstraints(pattern=r"^/", max_length=1024)] = Field(
        "/health", description="Path of the health endpoint on the Service."
    )
    port: int = Field(3000, ge=1, le=65535, description="The API's HTTP port.")
    interval_seconds: int = Field(
        30, ge=1, le=3600, description="Time between probes (the runbook says 1-2 minutes)."
    )
    timeout_seconds: float = Field(
        10, gt=0, le=120, description="A probe without an answer in this time counts as down."
    )
    failure_threshold: int = Field(
        3, ge=1, le=100, description="Consecutive bad probes before an alert fires."
    )
    success_threshold: int = Field(
        2, ge=1, le=100, description="Consecutive good probes before the recovery alert."
    )
    queue_failed_threshold: schema.Optional[int] = Field(
        None, ge=0, description="A queue with more failed jobs than this counts as degraded."
    )


class AlertsSpec(schema.BaseModel):
    repeat_interval: Duration = Field(
        "4h", description="Repeat a firing alert this often while the problem lasts."
    )
    recovery: bool = Field(True, description="Send one info alert when a problem is resolved.")


class DependenciesSpec(schema.BaseModel):
    """What the operator checks itself when /health says error or down (triage)."""

    database: DatabaseRef = Field(default_factory=DatabaseRef)
    redis: schema.Optional[SecretKeyRef] = Field(
        None, description="Secret key with the Redis URL (redis://...); no Redis check if unset."
    )
    queues: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=lambda: ["dian", "backup", "reports"],
        description="BullMQ queues whose counts are read from Redis during triage.",
    )


class ApiDeploymentSpec(schema.BaseModel):
    health_check: HealthCheckSpec = Field(default_factory=HealthCheckSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    dependencies: DependenciesSpec = Field(default_factory=DependenciesSpec)


class HealthPhase(StrEnum):
    PENDING = "Pending"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ERROR = "Error"
    DOWN = "Down"


class QueueStatus(schema.BaseModel):
    status: str
    waiting: int = 0
    active: int = 0
    failed: int = 0


class TriageStatus(schema.BaseModel):
    summary: str = Field(..., description="Which dependency is down, in words.")
    culprit: schema.Optional[str] = Field(None, description="The first dependency found down.")
    checked_at: schema.Optional[datetime.datetime] = None


class HealthStatus(schema.BaseModel):
    state: str = Field(..., description="ok, degraded, error or down.")
    message: str = ""
    checked_at: schema.Optional[datetime.datetime] = None
    url: schema.Optional[str] = None
    http_status: schema.Optional[int] = None
    latency_ms: schema.Optional[int] = None
    database: schema.Optional[str] = None
    redis: schema.Optional[str] = None
    queues: dict[str, QueueStatus] = Field(default_factory=dict)
    response_time: schema.Optional[str] = None
    triage: schema.Optional[TriageStatus] = None


class ApiDeploymentStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[HealthPhase] = None
    conditions: Conditions = Field(default_factory=list)
    health: schema.Optional[HealthStatus] = None
    alerts: dict[str, CheckState] = Field(
        default_factory=dict, description="Alert state per check (api, database, redis, queue/x)."
    )


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class ApiDeployment(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["apid"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Health", "type": "string", "jsonPath": ".status.health.state"},
        {"name": "Database", "type": "string", "jsonPath": ".status.health.database"},
        {"name": "Redis", "type": "string", "jsonPath": ".status.health.redis"},
        {"name": "Checked", "type": "date", "jsonPath": ".status.health.checkedAt"},
        {"name": "Message", "type": "string", "jsonPath": ".status.health.message", "priority": 1},
    ],
):
    """The Orion API: its /health probe, the triage of its dependencies, and its alerts."""

    spec: ApiDeploymentSpec = Field(default_factory=ApiDeploymentSpec)
    status: ApiDeploymentStatus = Field(default_factory=ApiDeploymentStatus)
