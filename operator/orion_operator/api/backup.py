"""The Backup custom resource: one backup run, platform (pg_dump) or tenant (ZIP of CSVs)."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.api.common import (
    QUANTITY_PATTERN,
    Conditions,
    DatabaseRef,
    DnsLabel,
    DnsSubdomain,
    SecretName,
)

DEFAULT_BACKUP_DIR = "./backups"
# On every Backup a BackupSchedule creates: its deletionPolicy defaults to Delete.
SCHEDULE_LABEL = "orion.io/backup-schedule"
# Everything but deletionPolicy is fixed once the run is declared.
_FIXED_FIELDS = ("type", "format", "tenantRef", "database", "storage", "executor", "job")
IMMUTABLE_SPEC_RULE = " && ".join(
    f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})"
    for f in _FIXED_FIELDS
)


class BackupType(StrEnum):
    PLATFORM = "platform"
    TENANT = "tenant"


class BackupFormat(StrEnum):
    CUSTOM = "custom"
    PLAIN = "plain"


class BackupExecutor(StrEnum):
    INLINE = "inline"
    JOB = "job"


class BackupDeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class BackupPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class TenantRef(schema.BaseModel):
    name: DnsLabel = Field(..., description="A Tenant in the same namespace.")


class VolumeStorage(schema.BaseModel):
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        DEFAULT_BACKUP_DIR,
        description="Directory for artifacts (the runbook's BACKUP_DIR); a PVC mount in a cluster.",
    )
    min_free_percent: int = Field(
        20, ge=0, le=99, description="Fail before dumping when less space than this is free."
    )
    claim_name: schema.Optional[DnsSubdomain] = Field(
        None,
        description="PersistentVolumeClaim mounted at `path` in backup Jobs (job executor).",
    )


class S3Storage(schema.BaseModel):
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63)] = Field(
        ..., description="The runbook's BACKUP_S3_BUCKET."
    )
    prefix: Annotated[str, StringConstraints(max_length=512)] = Field("", description="Key prefix.")
    endpoint: schema.Optional[
        Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    ] = Field(None, description="S3-compatible endpoint URL; AWS when unset.")
    region: schema.Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    credentials_secret: schema.Optional[SecretName] = Field(
        None,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the operator's "
        "own AWS credentials when unset.",
    )


class StorageSpec(
    schema.BaseModel,
    # Wherever a storage is declared (schedules, tenants, pre-rollout backups), not only on Backups.
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "!(has(self.volume) && has(self.s3))",
                "message": "storage takes one of volume or s3, not both",
            }
        ]
    },
):
    volume: schema.Optional[VolumeStorage] = None
    s3: schema.Optional[S3Storage] = None


Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)]


class JobResources(schema.BaseModel):
    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "256Mi"}
    )
    limits: dict[str, Quantity] = Field(default_factory=lambda: {"cpu": "2", "memory": "1Gi"})


class JobSettings(schema.BaseModel):
    """How a backup Job runs (job executor)."""

    backoff_limit: int = Field(
        1, ge=0, le=10, description="Retries of a failed backup pod; each starts over."
    )
    active_deadline_seconds: int = Field(
        21600, ge=60, description="The Job fails when the backup takes longer than this."
    )
    resources: JobResources = Field(default_factory=JobResources)


class BackupSpec(schema.BaseModel):
    type: BackupType = Field(BackupType.PLATFORM, description="platform: pg_dump; tenant: ZIP.")
    format: BackupFormat = Field(
        BackupFormat.CUSTOM, description="pg_dump format of platform backups: custom or plain."
    )
    tenant_ref: schema.Optional[TenantRef] = Field(None, description="Required for tenant.")
    database: DatabaseRef = Field(default_factory=DatabaseRef)
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="One of volume or s3; a volume when empty."
    )
    executor: schema.Optional[BackupExecutor] = Field(
        None,
        description="inline: in the operator process; job: a batch/v1 Job with the operator "
        "image. The operator's ORION_BACKUP_EXECUTOR when unset.",
    )
    job: JobSettings = Field(default_factory=JobSettings, description="Job executor settings.")
    deletion_policy: schema.Optional[BackupDeletionPolicy] = Field(
        None,
        description="What deleting this Backup does to its artifact: Retain keeps it, Delete "
        "removes it. Unset: Delete for Backups made by a BackupSchedule, else Retain.",
    )


class VolumeSpaceStatus(schema.BaseModel):
    """The backup volume's free space, measured by the operator when a run ends."""

    free_bytes: int
    total_bytes: int
    free_percent: float
    measured_at: datetime.datetime


class BackupStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[BackupPhase] = None
    conditions: Conditions = Field(default_factory=list)
    attempts: int = 0
    started_at: schema.Optional[datetime.datetime] = None
    completed_at: schema.Optional[datetime.datetime] = None
    duration_seconds: schema.Optional[float] = None
    size_bytes: schema.Optional[int] = None
    sha256: schema.Optional[str] = None
    executor: schema.Optional[BackupExecutor] = Field(None, description="Where the run went.")
    job: schema.Optional[str] = Field(None, description="The backup Job (job executor).")
    artifact_key: schema.Optional[str] = Field(
        None, description="Key of the artifact inside the storage, fixed when the run starts."
    )
    location: schema.Optional[str] = Field(None, description="file:// or s3:// URI.")
    cleanup_pending: schema.Optional[int] = Field(
        None,
        description="A failed run's partial artifact is still to be removed: failed attempts so "
        "far (retried with backoff).",
    )
    manifest: schema.Optional[str] = Field(None, description="URI of the JSON manifest.")
    pg_dump_version: schema.Optional[str] = None
    server_version: schema.Optional[str] = None
    row_counts: dict[str, int] = Field(default_factory=dict, description="Tenant backups.")
    volume_space: schema.Optional[VolumeSpaceStatus] = Field(
        None, description="Free space on the volume when the run ended (volume storage only)."
    )
    message: schema.Optional[str] = None


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class Backup(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["bk"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Tenant", "type": "string", "jsonPath": ".spec.tenantRef.name"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Size", "type": "integer", "jsonPath": ".status.sizeBytes"},
        {"name": "Completed", "type": "date", "jsonPath": ".status.completedAt"},
        {"name": "Location", "type": "string", "jsonPath": ".status.location", "priority": 1},
    ],
):
    """One backup run: pg_dump of the whole database, or one tenant's rows as CSVs in a ZIP."""

    spec: BackupSpec = Field(
        default_factory=BackupSpec,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'tenant' || has(self.tenantRef)",
                    "message": "tenant backups need spec.tenantRef",
                    "fieldPath": ".tenantRef",
                },
                {
                    "rule": IMMUTABLE_SPEC_RULE,
                    "message": "a Backup's spec cannot change, except deletionPolicy; "
                    "create a new Backup",
                },
            ]
        },
    )
    status: BackupStatus = Field(default_factory=BackupStatus)
