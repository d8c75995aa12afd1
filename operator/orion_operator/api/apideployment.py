"""The ApiDeployment custom resource: the Orion API, its Deployment and Service, scaling, health.

The operator renders an owned Deployment and Service from the spec, follows `/scale` (kubectl,
an HPA, KEDA) within minReplicas/maxReplicas, probes the /health contract, triages the
dependencies and alerts. A new pod template is rolled out through the runbook's checklist
(configuration present, a recent backup, migrations, the rollout, verification) and rolled
back to the last known-good one when verification fails and a rollback can help.
"""

from __future__ import annotations

import datetime
import re
from enum import StrEnum
from typing import Annotated, Any

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.alerts.state import CheckState
from orion_operator.api.backup import BackupExecutor, BackupFormat, StorageSpec
from orion_operator.api.common import (
    QUANTITY_PATTERN,
    Conditions,
    DatabaseRef,
    DnsSubdomain,
    SecretKey,
    SecretKeyRef,
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> datetime.timedelta:
    """Go-style durations as Kubernetes users write them: 30s, 5m, 4h, 1h30m."""
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return datetime.timedelta(seconds=seconds)


Port = Annotated[int, Field(ge=1, le=65535)]
# Kubernetes resource quantities are written as strings ("250m", "1Gi") or plain numbers (2).
Quantity = Annotated[schema.IntOrString, Field(json_schema_extra={"pattern": QUANTITY_PATTERN})]
EnvName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
]
# Label and annotation syntax as the API server checks it on the Deployment: a bad one accepted
# here would only fail later, on every apply of the owned Deployment.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelMap = dict[str, Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]]
MAX_POD_METADATA = 64  # keys per map; bounds the cost of the CEL rules below
_QUALIFIED_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
METADATA_KEY_RULE = {
    "rule": f"self.all(k, size(k) <= 317 && k.matches('^({_KEY_PREFIX})?{_QUALIFIED_NAME}$'))",
    "message": "keys are [prefix/]name: name at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit; prefix a DNS subdomain",
}
# The pods' selector labels: the operator sets them, podLabels may not.
SELECTOR_LABEL_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/instance")


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
    port: schema.Optional[Port] = Field(
        None,
        description=(
            "Port the health endpoint is served on; defaults to spec.port. Set it only when "
            "health is served on a port of its own (the Service then exposes both)."
        ),
    )
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


class ConfigMapKeyRef(schema.BaseModel):
    """A key of a ConfigMap in the object's own namespace."""

    name: DnsSubdomain = Field(..., description="Name of the ConfigMap.")
    key: SecretKey = Field(..., description="Key inside the ConfigMap.")


class EnvValueFrom(
    schema.BaseModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "message": "valueFrom takes one of secretKeyRef or configMapKeyRef",
            }
        ]
    },
):
    secret_key_ref: schema.Optional[SecretKeyRef] = None
    config_map_key_ref: schema.Optional[ConfigMapKeyRef] = None


class EnvVar(
    schema.BaseModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "!(has(self.value) && has(self.valueFrom))",
                "message": "an env entry takes value or valueFrom, not both",
            }
        ]
    },
):
    name: EnvName = Field(..., description="Environment variable name.")
    value: schema.Optional[Annotated[str, StringConstraints(max_length=32768)]] = None
    value_from: schema.Optional[EnvValueFrom] = Field(
        None, description="A key of a Secret or ConfigMap in the object's namespace."
    )


class NameRef(schema.BaseModel):
    name: DnsSubdomain = Field(..., description="Name of the object, in the same namespace.")


class EnvFromSource(
    schema.BaseModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "has(self.secretRef) != has(self.configMapRef)",
                "message": "an envFrom entry takes one of secretRef or configMapRef",
            }
        ]
    },
):
    secret_ref: schema.Optional[NameRef] = Field(None, description="Every key of a Secret.")
    config_map_ref: schema.Optional[NameRef] = Field(None, description="Every key of a ConfigMap.")
    prefix: schema.Optional[EnvName] = Field(None, description="Prepended to every key.")


class ResourcesSpec(
    schema.BaseModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                # The Deployment would be refused on every apply; say so at the source.
                # A fixed list of names: iterating the maps costs more than CEL allows.
                "rule": "!has(self.requests) || !has(self.limits) || "
                "['cpu', 'memory', 'ephemeral-storage'].all(k, !(k in self.requests) || "
                "!(k in self.limits) || quantity(string(self.requests[k]))"
                ".compareTo(quantity(string(self.limits[k]))) <= 0)",
                "message": "spec.resources.requests must not exceed spec.resources.limits",
                "fieldPath": ".requests",
            }
        ]
    },
):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="e.g. {cpu: 250m, memory: 256Mi}"
    )
    limits: dict[str, Quantity] = Field(default_factory=dict, description="e.g. {memory: 512Mi}")


class ConnectionBudgetSpec(schema.BaseModel):
    """How scaling is weighed against PostgreSQL's max_connections."""

    per_replica: int = Field(
        10,
        ge=0,
        le=10000,
        description="Estimated connections one API replica opens (its Prisma pool size).",
    )
    max_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description=(
            "Warn before a scale-up would take the connections in use above this share of "
            "max_connections."
        ),
    )


class MigrationsSpec(schema.BaseModel):
    """The database migrations, run as a Job with the new image before any pod restarts."""

    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=lambda: ["npx", "prisma", "migrate", "deploy"],
        min_length=1,
        max_length=100,
        description="The command, run with the API container's env and envFrom.",
    )
    active_deadline_seconds: int = Field(
        600, ge=1, description="The Job fails when the migrations take longer than this."
    )
    backoff_limit: int = Field(
        0,
        ge=0,
        le=10,
        description="Retries of a failed migration pod (each runs the command again).",
    )


class PreDeployBackupSpec(schema.BaseModel):
    """The platform Backup taken before a rollout when none is recent enough."""

    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="As a Backup's spec.storage; a volume when empty."
    )
    format: BackupFormat = Field(BackupFormat.CUSTOM, description="pg_dump format.")
    executor: schema.Optional[BackupExecutor] = Field(
        None, description="inline or job; the operator's ORION_BACKUP_EXECUTOR when unset."
    )


class PreDeploySpec(schema.BaseModel):
    """The runbook's pre-deployment checklist, run before any pod gets the new template."""

    require_backup_within: schema.Optional[Duration] = Field(
        None,
        description=(
            "A Completed platform Backup of spec.dependencies.database at most this old must "
            "exist (e.g. 24h); otherwise one is taken first and waited for."
        ),
    )
    backup: PreDeployBackupSpec = Field(default_factory=PreDeployBackupSpec)
    migrations: schema.Optional[MigrationsSpec] = Field(
        None, description="Run the migrations as a Job with the new image; none when unset."
    )


class HttpMethod(StrEnum):
    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


class SmokeRequest(schema.BaseModel):
    """One request made during verification, e.g. the runbook's POST /auth/login."""

    method: HttpMethod = HttpMethod.GET
    path: Annotated[str, StringConstraints(pattern=r"^/", max_length=2048)] = Field(
        ..., description="Path on the API's address (the Service, or healthCheck.url's origin)."
    )
    headers: dict[str, Annotated[str, StringConstraints(max_length=8192)]] = Field(
        default_factory=dict
    )
    body: schema.Optional[Annotated[str, StringConstraints(max_length=65536)]] = Field(
        None, description="Request body, sent as given (set Content-Type in headers)."
    )
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200],
        min_length=1,
        max_length=20,
        description="The request passes when the answer's status code is one of these.",
    )
    timeout_seconds: float = Field(10, gt=0, le=120)


class RolloutSpec(schema.BaseModel):
    progress_deadline_seconds: int = Field(
        600,
        ge=1,
        description=(
            "The Deployment must have every replica updated and available within this time, "
            "or the rollout fails (and is rolled back)."
        ),
    )
    verify_seconds: int = Field(
        60,
        ge=0,
        le=86400,
        description=(
            "After the rollout, /health must stay ok this long (healthCheck.failureThreshold "
            "bad probes fail it) and the smoke requests must pass."
        ),
    )
    auto_rollback: bool = Field(
        True,
        description="Put the last known-good pod template back when the rollout fails.",
    )
    smoke: list[SmokeRequest] = Field(
        default_factory=list, max_length=20, description="Requests that must pass after a rollout."
    )
    history_limit: int = Field(10, ge=1, le=50, description="Revisions kept in status.history.")


class ApiDeploymentSpec(schema.BaseModel):
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^\S+$")] = (
        Field(..., description="The API's container image, e.g. ghcr.io/acme/orion-api:1.4.2.")
    )
    replicas: int = Field(
        2,
        ge=0,
        description=(
            "Desired replicas; `kubectl scale`, an HPA or KEDA write it through /scale. The "
            "Deployment gets it clamped to [minReplicas, maxReplicas]."
        ),
    )
    min_replicas: int = Field(1, ge=0, description="Fewest replicas the Deployment is given.")
    max_replicas: int = Field(10, ge=1, description="Most replicas the Deployment is given.")
    port: Port = Field(3000, description="The API's HTTP port (container and Service).")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Environment variables: a value, or a key of a Secret or ConfigMap.",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=50,
        description="Secrets and ConfigMaps whose every key becomes a variable.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    pod_labels: LabelMap = Field(
        default_factory=dict,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": " && ".join(f"!('{key}' in self)" for key in SELECTOR_LABEL_KEYS),
                    "message": "spec.podLabels may not set "
                    + " or ".join(SELECTOR_LABEL_KEYS)
                    + ": the operator sets them to select the pods",
                },
                {**METADATA_KEY_RULE, "message": "spec.podLabels " + METADATA_KEY_RULE["message"]},
            ]
        },
        max_length=MAX_POD_METADATA,
        description="Extra labels on the pods.",
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_POD_METADATA,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    **METADATA_KEY_RULE,
                    "message": "spec.podAnnotations " + METADATA_KEY_RULE["message"],
                }
            ]
        },
        description="Extra annotations on the pods.",
    )
    database_connections: ConnectionBudgetSpec = Field(default_factory=ConnectionBudgetSpec)
    health_check: HealthCheckSpec = Field(default_factory=HealthCheckSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    dependencies: DependenciesSpec = Field(default_factory=DependenciesSpec)
    pre_deploy: PreDeploySpec = Field(default_factory=PreDeploySpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    rollback_to: schema.Optional[int] = Field(
        None,
        ge=1,
        description=(
            "Run this revision of status.history (a succeeded one) instead of the spec's "
            "template; remove it to roll the spec out again."
        ),
    )

    @property
    def health_port(self) -> int:
        return self.health_check.port or self.port


class ApiPhase(StrEnum):
    """For `kubectl get`: the Deployment's state first, then the health classification."""

    PENDING = "Pending"  # the Deployment has not reported yet
    PROGRESSING = "Progressing"  # a rollout is under way
    UNAVAILABLE = "Unavailable"  # fewer available replicas than the Deployment needs
    AVAILABLE = "Available"  # available, not probed yet
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ERROR = "Error"
    DOWN = "Down"
    BLOCKED = "Blocked"  # a rollout waits for configuration that is missing
    FAILED = "Failed"  # a rollout failed and was not rolled back
    ROLLED_BACK = "RolledBack"  # the last known-good template runs instead of the spec's


class Gate(StrEnum):
    """The rollout's checklist, in order."""

    CONFIGURATION = "Configuration"
    BACKUP = "Backup"
    MIGRATIONS = "Migrations"
    DEPLOY = "Deploy"
    VERIFY = "Verify"


class RolloutResult(StrEnum):
    RUNNING = "Running"
    BLOCKED = "Blocked"  # waiting for configuration; nothing has restarted
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"  # a newer spec replaced it before it finished (history only)


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


class DatabaseConnectionsStatus(schema.BaseModel):
    in_use: int = Field(..., description="Client connections in pg_stat_activity.")
    max_connections: int = Field(..., description="The server's max_connections.")
    used_percent: int = Field(..., description="in_use as a percentage of max_connections.")
    checked_at: schema.Optional[datetime.datetime] = None


class _PreservedObject:
    """A free-form object in the schema (a pod template as the operator rendered it)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


PodTemplate = Annotated[dict[str, Any], _PreservedObject]


class VerifyStatus(schema.BaseModel):
    """Post-deploy verification: the probes seen since the window (re)started."""

    started_at: datetime.datetime
    probes: int = 0
    failures: int = Field(0, description="Bad probes in the window.")
    successes: int = Field(0, description="Consecutive ok probes.")
    smoke: schema.Optional[str] = Field(None, description="Passed, or why the smoke failed.")
    smoke_passed: schema.Optional[bool] = None
    paused: bool = Field(False, description="A dependency is down: a rollback would not help.")
    last_probe: schema.Optional[str] = None


class RolloutStatus(schema.BaseModel):
    """The current (or last) rollout; the operator continues it from here after a restart."""

    revision: int
    key: str = Field(..., description="Hash of the pod template and rollout settings.")
    generation: schema.Optional[int] = None
    image: str
    manual: bool = Field(False, description="A rollback asked for with spec.rollbackTo.")
    gate: Gate
    result: RolloutResult
    reason: str = ""
    message: str = ""
    started_at: datetime.datetime
    gate_started_at: schema.Optional[datetime.datetime] = None
    finished_at: schema.Optional[datetime.datetime] = None
    backup: schema.Optional[str] = Field(None, description="The pre-rollout Backup.")
    backup_created: bool = False
    migration_job: schema.Optional[str] = None
    migrations_ran: bool = False
    held: schema.Optional[str] = Field(
        None, description="Why a failed rollout is not rolled back (a dependency is down)."
    )
    verify: schema.Optional[VerifyStatus] = None
    template: PodTemplate = Field(
        default_factory=dict, description="The pod template being rolled out."
    )
    from_template: schema.Optional[PodTemplate] = Field(
        None, description="The pod template that ran when this rollout started."
    )
    from_key: schema.Optional[str] = None


class RevisionStatus(schema.BaseModel):
    revision: int
    image: str
    generation: schema.Optional[int] = None
    key: str = ""
    result: RolloutResult
    reason: str = ""
    message: str = ""
    started_at: schema.Optional[datetime.datetime] = None
    finished_at: schema.Optional[datetime.datetime] = None
    backup: schema.Optional[str] = Field(None, description="The pre-rollout Backup's name.")
    migrations_ran: bool = False
    template: schema.Optional[PodTemplate] = Field(
        None, description="Kept for succeeded revisions, the ones spec.rollbackTo can name."
    )


class ApiDeploymentStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[ApiPhase] = None
    conditions: Conditions = Field(default_factory=list)
    replicas: schema.Optional[int] = Field(
        None, description="Pods of the Deployment (the /scale status)."
    )
    target_replicas: schema.Optional[int] = Field(
        None, description="Replicas the Deployment was given: spec.replicas within the bounds."
    )
    ready_replicas: schema.Optional[int] = None
    updated_replicas: schema.Optional[int] = None
    available_replicas: schema.Optional[int] = None
    selector: schema.Optional[str] = Field(
        None, description="The pods' label selector, for /scale (HPA, KEDA)."
    )
    current_image: schema.Optional[str] = Field(
        None, description="The image in the Deployment's pod template."
    )
    database_connections: schema.Optional[DatabaseConnectionsStatus] = Field(
        None, description="PostgreSQL connection use at the last measurement."
    )
    health: schema.Optional[HealthStatus] = None
    alerts: dict[str, CheckState] = Field(
        default_factory=dict, description="Alert state per check (api, database, redis, queue/x)."
    )
    rollout: schema.Optional[RolloutStatus] = None
    stable_image: schema.Optional[str] = Field(None, description="The last known-good image.")
    stable_revision: schema.Optional[int] = None
    stable_key: schema.Optional[str] = None
    stable_template: schema.Optional[PodTemplate] = Field(
        None, description="The last known-good pod template: what a rollback puts back."
    )
    failed_image: schema.Optional[str] = Field(
        None, description="The image of the last rolled-back rollout; not rolled out again."
    )
    failed_generation: schema.Optional[int] = None
    failed_key: schema.Optional[str] = None
    history: list[RevisionStatus] = Field(
        default_factory=list, description="The last rollouts, newest last."
    )


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class ApiDeployment(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["apid"],
    subresources={
        "status": {},
        # kubectl scale, HPAs and KEDA write spec.replicas here (docs/apideployments.md#scaling).
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    },
    # The owned Service takes the object's name, and a Service name is a DNS label (RFC 1035).
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') "
                "&& size(self.metadata.name) <= 63",
                "message": "an ApiDeployment's name becomes its Service's name: at most 63 "
                "lower-case letters, digits and '-', starting with a letter",
            }
        ]
    },
    printer_columns=[
        {"name": "Image", "type": "string", "jsonPath": ".status.currentImage"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Health", "type": "string", "jsonPath": ".status.health.state"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Database",
            "type": "string",
            "jsonPath": ".status.health.database",
            "priority": 1,
        },
        {"name": "Redis", "type": "string", "jsonPath": ".status.health.redis", "priority": 1},
        {"name": "Stable", "type": "string", "jsonPath": ".status.stableImage", "priority": 1},
        {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.result", "priority": 1},
        {"name": "Gate", "type": "string", "jsonPath": ".status.rollout.gate", "priority": 1},
        {"name": "Checked", "type": "date", "jsonPath": ".status.health.checkedAt", "priority": 1},
        {"name": "Message", "type": "string", "jsonPath": ".status.health.message", "priority": 1},
    ],
):
    """The Orion API: its Deployment and Service, scaling, /health probe, triage and alerts."""

    spec: ApiDeploymentSpec = Field(
        ...,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "spec.minReplicas must not be greater than spec.maxReplicas",
                    "fieldPath": ".minReplicas",
                }
            ]
        },
    )
    status: ApiDeploymentStatus = Field(default_factory=ApiDeploymentStatus)
