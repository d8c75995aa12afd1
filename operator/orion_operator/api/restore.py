"""The Restore custom resource: a platform or tenant backup put back into a database, once."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.api.backup import BackupExecutor, JobSettings, StorageSpec
from orion_operator.api.common import Conditions, DatabaseRef, DnsSubdomain

DEFAULT_VERIFY_SQL = 'SELECT COUNT(*) FROM "Tenant"'
MAX_VERIFY_CHECKS = 20


class RestorePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class BackupRef(schema.BaseModel):
    name: DnsSubdomain = Field(..., description="A Completed Backup in the same namespace.")


class RestoreLocation(StorageSpec):
    """An artifact given by where it is: Backup's storage shape plus the artifact's key."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        ...,
        description='Key of the artifact inside the storage, e.g. "platform/prod-nightly.dump" '
        "(a Backup's status.artifactKey); its manifest must be beside it.",
    )


class VerifyExpectation(schema.BaseModel):
    min: schema.Optional[int] = Field(None, description="The value must be at least this.")
    max: schema.Optional[int] = Field(None, description="The value must be at most this.")
    equals: schema.Optional[int] = Field(None, description="The value must be exactly this.")


class VerifyCheck(schema.BaseModel):
    """A query run after the restore, in a read-only transaction; it returns one number."""

    sql: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        ..., description="A query returning one row with one integer column."
    )
    expect: VerifyExpectation = Field(
        default_factory=lambda: VerifyExpectation(min=1),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.min) || has(self.max) || has(self.equals)",
                    "message": "expect needs at least one of min, max or equals",
                },
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "message": "expect.min must not be greater than expect.max",
                },
            ]
        },
    )


def default_verify() -> list[VerifyCheck]:
    """The runbook's check: the restored database has tenants."""
    return [VerifyCheck(sql=DEFAULT_VERIFY_SQL, expect=VerifyExpectation(min=1))]


class RestoreJobSettings(JobSettings):
    backoff_limit: int = Field(
        0,
        ge=0,
        le=10,
        description="Retries of a failed restore pod. A restore commits all or nothing, so a "
        "retry starts from an unchanged target.",
    )


class RestoreSpec(schema.BaseModel):
    backup_ref: schema.Optional[BackupRef] = Field(
        None, description="Restore this Backup's artifact (one of backupRef or location)."
    )
    location: schema.Optional[RestoreLocation] = Field(
        None, description="Restore the artifact at this storage key (one of backupRef or location)."
    )
    database: DatabaseRef = Field(default_factory=DatabaseRef, description="The target database.")
    overwrite: bool = Field(
        False,
        description="Allow replacing existing data: a non-empty database (platform; pg_restore "
        "--clean --if-exists) or a tenant that still has rows (tenant). Without it such a "
        "Restore fails and changes nothing.",
    )
    allow_added_nullable_columns: bool = Field(
        False,
        description="Tenant restores: accept tables that gained columns since the backup when "
        "those columns are nullable or have a default (they get NULL or the default).",
    )
    verify: list[VerifyCheck] = Field(
        default_factory=default_verify,
        max_length=MAX_VERIFY_CHECKS,
        description='Queries run after the restore; default: SELECT COUNT(*) FROM "Tenant" '
        "is at least 1. An empty list skips verification.",
    )
    executor: schema.Optional[BackupExecutor] = Field(
        None,
        description="inline: in the operator process; job: a batch/v1 Job with the operator "
        "image. The operator's ORION_BACKUP_EXECUTOR when unset.",
    )
    job: RestoreJobSettings = Field(
        default_factory=RestoreJobSettings, description="Job executor settings."
    )


class RestoreSource(schema.BaseModel):
    backup: schema.Optional[str] = Field(None, description="The Backup restored (backupRef).")
    uri: schema.Optional[str] = Field(None, description="file:// or s3:// URI of the artifact.")
    kind: schema.Optional[str] = Field(None, description="platform or tenant, from the manifest.")
    format: schema.Optional[str] = Field(None, description="custom, plain or zip.")
    tenant: schema.Optional[str] = Field(None, description="The tenant id (tenant restores).")
    size_bytes: schema.Optional[int] = None
    sha256: schema.Optional[str] = Field(None, description="From the manifest.")
    sha256_verified: bool = Field(
        False, description="The artifact's bytes hashed to sha256 before the target was touched."
    )


class RestoreTarget(schema.BaseModel):
    database: schema.Optional[str] = Field(None, description="Database name (never the URL).")


class VerificationResult(schema.BaseModel):
    sql: str
    expect: str = Field("", description='The expectation as text, e.g. ">= 1".')
    value: schema.Optional[int] = None
    passed: bool = False
    message: schema.Optional[str] = None


class RestoreStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[RestorePhase] = None
    conditions: Conditions = Field(default_factory=list)
    attempts: int = 0
    started_at: schema.Optional[datetime.datetime] = None
    completed_at: schema.Optional[datetime.datetime] = None
    duration_seconds: schema.Optional[float] = None
    executor: schema.Optional[BackupExecutor] = Field(None, description="Where the run went.")
    job: schema.Optional[str] = Field(None, description="The restore Job (job executor).")
    source: schema.Optional[RestoreSource] = None
    target: schema.Optional[RestoreTarget] = None
    verification: list[VerificationResult] = Field(default_factory=list)
    row_counts: dict[str, int] = Field(
        default_factory=dict, description="Tenant restores: rows restored per table."
    )
    message: schema.Optional[str] = None


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class Restore(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["rst"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Backup", "type": "string", "jsonPath": ".spec.backupRef.name"},
        {"name": "Kind", "type": "string", "jsonPath": ".status.source.kind"},
        {"name": "Tenant", "type": "string", "jsonPath": ".status.source.tenant"},
        {"name": "Database", "type": "string", "jsonPath": ".status.target.database"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Completed", "type": "date", "jsonPath": ".status.completedAt"},
        {"name": "Source", "type": "string", "jsonPath": ".status.source.uri", "priority": 1},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ],
):
    """One restore: a platform backup into a database, or one tenant's rows from its ZIP."""

    spec: RestoreSpec = Field(
        default_factory=RestoreSpec,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.backupRef) != has(self.location)",
                    "message": "spec takes exactly one of backupRef or location",
                },
                {
                    "rule": "self == oldSelf",
                    "message": "a Restore's spec cannot change; create a new Restore",
                },
            ]
        },
    )
    status: RestoreStatus = Field(default_factory=RestoreStatus)
