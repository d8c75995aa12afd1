"""The Tenant custom resource: one customer of the multi-tenant Orion API."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.api.backupschedule import TenantBackupSpec
from orion_operator.api.common import Conditions, DatabaseRef, DnsLabel


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
    ERROR = "Error"


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
    provisioning: ProvisioningMode = Field(
        ProvisioningMode.ENSURE,
        description=(
            "ensure: the operator inserts or updates the tenant's row; "
            "observe: it only reads and reports."
        ),
    )
    database: DatabaseRef = Field(
        default_factory=DatabaseRef, description="The application database."
    )
    backup: schema.Optional[TenantBackupSpec] = Field(
        None,
        description="Scheduled backups of this tenant's rows: the operator keeps a "
        "BackupSchedule <name>-backup for them, and deletes it when this block goes.",
    )


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


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class Tenant(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["tn"],
    subresources={"status": {}},
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
                }
            ]
        },
    )
    status: TenantStatus = Field(default_factory=TenantStatus)
