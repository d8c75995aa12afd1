"""The Tenant custom resource: one customer of the multi-tenant Orion API."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.alerts.state import CheckState
from orion_operator.api.backup import StorageSpec
from orion_operator.api.backupschedule import TenantBackupSpec
from orion_operator.api.common import DNS_LABEL_PATTERN, Conditions, DatabaseRef, DnsLabel

# A PostgreSQL identifier as written in the mapping (quoted by the operator, never interpolated).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63)]


class Plan(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class ProvisioningMode(StrEnum):
    ENSURE = "ensure"
    OBSERVE = "observe"


class TenantPhase(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    SUSPENDED = "Suspended"
    DELETING = "Deleting"
    ERROR = "Error"


class TenantDeletionPolicy(StrEnum):
    RETAIN = "Retain"
    SUSPEND = "Suspend"
    DELETE = "Delete"


class TenantTableMapping(schema.BaseModel):
    """Where the application keeps its tenants: table, columns and values (Orion's by default)."""

    table: Identifier = Field("Tenant", description="The application's tenants table.")
    schema_name: Identifier = Field("public", alias="schema", description="Its PostgreSQL schema.")
    id_column: Identifier = Field("id", description="Column holding the tenant id.")
    name_column: Identifier = Field("name", description="Column for spec.displayName.")
    plan_column: Identifier = Field("plan", description="Column for spec.plan.")
    status_column: Identifier = Field("status", description="Column for active/suspended.")
    active_value: Annotated[str, StringConstraints(max_length=63)] = Field(
        "active", description="Status value of an active tenant."
    )
    suspended_value: Annotated[str, StringConstraints(max_length=63)] = Field(
        "suspended", description="Status value of a suspended tenant."
    )
    extra_columns: dict[str, Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict,
        description="Static values for other columns the application requires, e.g. "
        "{region: eu}; written when the row is inserted, never updated.",
    )


class FinalBackupSpec(schema.BaseModel):
    """The backup taken before deletionPolicy Delete removes the tenant's rows."""

    storage: schema.Optional[StorageSpec] = Field(
        None,
        description="Where it goes; spec.backup.storage when unset, else the default volume.",
    )


class TenantSpec(schema.BaseModel):
    tenant_id: schema.Optional[DnsLabel] = Field(
        None,
        description=(
            'The tenant\'s id in the application database (the "Tenant".id column). '
            "Lower-case letters, digits and '-', starting and ending with a letter or digit, "
            "at most 63 characters. Defaults to metadata.name. Cannot be changed once set."
        ),
    )
    display_name: schema.Optional[Annotated[str, StringConstraints(max_length=200)]] = Field(
        None, description="Human name; defaults to the tenant id."
    )
    plan: Plan = Field(Plan.FREE, description="Billing plan written to the tenant's row.")
    suspended: bool = Field(False, description="Mark the tenant suspended in the application.")
    provisioning: schema.Optional[ProvisioningMode] = Field(
        None,
        description=(
            "ensure: the operator inserts or updates the tenant's row; "
            "observe: it only reads and reports, and never writes. "
            "The operator's ORION_TENANT_PROVISIONING (ensure) when unset."
        ),
    )
    tenant_table: schema.Optional[TenantTableMapping] = Field(
        None,
        description="The application's tenants table and columns; replaces the operator's "
        "ORION_TENANT_TABLE as a whole (fields left out take Orion's own names).",
    )
    deletion_policy: TenantDeletionPolicy = Field(
        TenantDeletionPolicy.RETAIN,
        description="What deleting this Tenant does to its data: Retain leaves it, Suspend "
        "marks the tenant suspended, Delete takes a final tenant Backup and, once it is "
        "Completed, deletes the tenant's rows from every tenant-scoped table in one transaction.",
    )
    final_backup: schema.Optional[FinalBackupSpec] = Field(
        None, description="The backup deletionPolicy Delete takes first."
    )
    database: DatabaseRef = Field(
        default_factory=DatabaseRef, description="The application database."
    )
    backup: schema.Optional[TenantBackupSpec] = Field(
        None,
        description="Scheduled backups of this tenant's rows: the operator keeps a "
        "BackupSchedule <name>-backup for them, and deletes it when this block or the "
        "Tenant goes; the Backups it took stay, with their artifacts.",
    )


class IntegrityStatus(schema.BaseModel):
    """Database-wide counts: every Tenant on the same database reports the same numbers."""

    checked_at: schema.Optional[datetime.datetime] = None
    clean: bool = Field(True, description="No NULL-tenant or orphan rows outside the allow-list.")
    violations: int = Field(0, description="NULL-tenant plus orphan rows, allow-list excluded.")
    null_tenant_rows: dict[str, int] = Field(
        default_factory=dict,
        description='Rows with a NULL "tenantId" per table (tables with none left out).',
    )
    allowed_null_tenant_rows: dict[str, int] = Field(
        default_factory=dict, description="NULL-tenant rows the allow-list accepts, per table."
    )
    orphan_rows: dict[str, int] = Field(
        default_factory=dict,
        description='Rows whose "tenantId" names no tenant row, per table.',
    )
    trigger: schema.Optional[str] = Field(
        None, description="The integrity.orion.io/check annotation value last acted on."
    )
    message: schema.Optional[str] = None


class DeletionStatus(schema.BaseModel):
    policy: schema.Optional[TenantDeletionPolicy] = None
    backup: schema.Optional[str] = Field(None, description="The final Backup (policy Delete).")
    reason: schema.Optional[str] = None
    message: schema.Optional[str] = None


class TenantStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = Field(None, description="Generation reconciled.")
    phase: schema.Optional[TenantPhase] = Field(None, description="Summary; see conditions.")
    tenant_id: schema.Optional[str] = Field(None, description="Tenant id in use (spec or name).")
    conditions: Conditions = Field(default_factory=list)
    row_counts: dict[str, int] = Field(
        default_factory=dict,
        description='Rows of this tenant in each tenant-scoped table (tables with "tenantId").',
    )
    last_synced_at: schema.Optional[datetime.datetime] = Field(
        None, description="When the database was last read."
    )
    backup_schedule: schema.Optional[str] = Field(
        None, description="The BackupSchedule kept for spec.backup."
    )
    provisioning: schema.Optional[ProvisioningMode] = Field(
        None, description="The provisioning mode in effect (spec or operator default)."
    )
    integrity: schema.Optional[IntegrityStatus] = Field(
        None, description="The last multi-tenant integrity check of the tenant's database."
    )
    alerts: dict[str, CheckState] = Field(
        default_factory=dict, description="Alert state per check (integrity)."
    )
    deletion: schema.Optional[DeletionStatus] = Field(
        None, description="Progress of deletionPolicy once the Tenant is being deleted."
    )


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class Tenant(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["tn"],
    subresources={"status": {}},
    # The tenant id defaults to the name, and a name may have dots a tenant id may not.
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "(has(self.spec) && has(self.spec.tenantId)) || "
                f"(self.metadata.name.matches('{DNS_LABEL_PATTERN}') "
                "&& size(self.metadata.name) <= 63)",
                "message": "spec.tenantId is required when metadata.name is not a DNS label "
                "(lower-case letters, digits and '-', at most 63 characters)",
                "fieldPath": ".spec.tenantId",
            }
        ]
    },
    printer_columns=[
        {"name": "Tenant ID", "type": "string", "jsonPath": ".status.tenantId"},
        {"name": "Plan", "type": "string", "jsonPath": ".spec.plan"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Users", "type": "integer", "jsonPath": ".status.rowCounts.User"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "priority": 1,
        },
    ],
):
    """A customer of the Orion API, with its row in the application database."""

    spec: TenantSpec = Field(
        default_factory=TenantSpec,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(oldSelf.tenantId) || "
                    "(has(self.tenantId) && self.tenantId == oldSelf.tenantId)",
                    "message": "spec.tenantId cannot be changed once set",
                    "fieldPath": ".tenantId",
                },
                {
                    "rule": "!has(self.provisioning) || self.provisioning != 'observe' "
                    "|| !has(self.deletionPolicy) || self.deletionPolicy == 'Retain'",
                    "message": "provisioning observe never writes: deletionPolicy must be Retain",
                    "fieldPath": ".deletionPolicy",
                },
            ]
        },
    )
    status: TenantStatus = Field(default_factory=TenantStatus)
