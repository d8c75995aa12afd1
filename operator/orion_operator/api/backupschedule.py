"""The BackupSchedule custom resource: Backups on a cron schedule, with retention."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import ConfigDict, Field, StringConstraints

from orion_operator import API_VERSION
from orion_operator.api.backup import BackupExecutor, BackupSpec, BackupType, StorageSpec
from orion_operator.api.common import Conditions, DatabaseRef

# Cron in five fields, each field's values within its range, or a macro. The API server has no
# cron function in CEL, so the pattern is where apply-time validation happens; the operator
# still checks with the cron library (a date that never comes, such as 31 February, passes).
_STEP = r"(/([1-9][0-9]?))?"


def _names(*names: str) -> str:
    return "|".join("".join(f"[{c.upper()}{c}]" for c in name) for name in names)


_MINUTE = r"[0-5]?[0-9]"
_HOUR = r"[01]?[0-9]|2[0-3]"
_DAY = r"0?[1-9]|[12][0-9]|3[01]"
_MONTH = r"0?[1-9]|1[0-2]|" + _names(
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
)
_WEEKDAY = r"[0-7]|" + _names("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _field(value: str) -> str:
    item = rf"(\*|({value})(-({value}))?){_STEP}"
    return rf"{item}(,{item})*"


CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(f"({_field(value)})" for value in (_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY))
    + r")$"
)
CronSchedule = Annotated[str, StringConstraints(pattern=CRON_PATTERN, max_length=256)]
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"
RETENTION_AGE_PATTERN = r"^([0-9]+(w|d|h|m))+$"
RetentionAge = Annotated[str, StringConstraints(pattern=RETENTION_AGE_PATTERN, max_length=32)]
# A Backup's name labels its Job and pods, and label values stop at 63 characters; a schedule's
# Backups are `<schedule>-<yyyymmddhhmm>`, so the schedule's name leaves room for the suffix.
MAX_BACKUP_NAME = 63
MAX_SCHEDULE_NAME = MAX_BACKUP_NAME - len("-yyyymmddhhmm")


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"


class SchedulePhase(StrEnum):
    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    ERROR = "Error"


class RetentionSpec(schema.BaseModel):
    """Which Completed Backups to keep; unset rules keep everything. The newest is always kept."""

    keep_last: schema.Optional[int] = Field(None, ge=0, description="The newest N.")
    keep_daily: schema.Optional[int] = Field(
        None, ge=0, description="The newest of each day, for the N most recent days with one."
    )
    keep_weekly: schema.Optional[int] = Field(
        None, ge=0, description="The newest of each ISO week, for the N most recent weeks."
    )
    max_age: schema.Optional[RetentionAge] = Field(
        None, description="Older than this (e.g. 30d, 12h, 2w) is pruned, whatever keeps it."
    )


class BackupScheduleSpec(schema.BaseModel):
    schedule: CronSchedule = Field(
        ..., description="Cron, five fields (minute hour day month weekday) or @daily etc."
    )
    time_zone: Annotated[str, StringConstraints(pattern=TIME_ZONE_PATTERN, max_length=64)] = Field(
        "UTC", description="IANA time zone of the schedule, e.g. Europe/Madrid."
    )
    suspend: bool = Field(False, description="Create no new Backups while true.")
    starting_deadline_seconds: schema.Optional[int] = Field(
        None,
        ge=0,
        description="A run missed (operator down) by more than this is skipped; unset: the "
        "most recent missed run is taken once, however late.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        ConcurrencyPolicy.FORBID, description="Forbid: skip a run while the previous one runs."
    )
    template: BackupSpec = Field(
        default_factory=BackupSpec,
        description="The spec of each Backup.",
        # A Backup's own rule, here too: otherwise every Backup the schedule makes is refused.
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'tenant' || has(self.tenantRef)",
                    "message": "tenant backups need spec.template.tenantRef",
                    "fieldPath": ".tenantRef",
                },
            ]
        },
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec)


class BackupScheduleStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[SchedulePhase] = None
    conditions: Conditions = Field(default_factory=list)
    last_schedule_time: schema.Optional[datetime.datetime] = Field(
        None, description="The fire time most recently handled (run or skipped)."
    )
    last_successful_time: schema.Optional[datetime.datetime] = Field(
        None, description="When the newest Completed Backup finished."
    )
    next_schedule_time: schema.Optional[datetime.datetime] = None
    active: list[str] = Field(default_factory=list, description="Backups Pending or Running.")
    last_backup: schema.Optional[str] = Field(None, description="The newest Backup created.")
    pruned: int = Field(0, description="Backups deleted by retention so far.")


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class BackupSchedule(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["bks"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime"},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    ],
):
    """Backups on a cron schedule, named <schedule>-<yyyymmddhhmm>, pruned by retention."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"size(self.metadata.name) <= {MAX_SCHEDULE_NAME}",
                    "message": f"metadata.name: a BackupSchedule's name has at most "
                    f"{MAX_SCHEDULE_NAME} characters, so that its Backups' names "
                    f"(<schedule>-<yyyymmddhhmm>) fit in {MAX_BACKUP_NAME}",
                }
            ]
        }
    )

    spec: BackupScheduleSpec
    status: BackupScheduleStatus = Field(default_factory=BackupScheduleStatus)


class TenantBackupSpec(schema.BaseModel):
    """A Tenant's own scheduled backups: the operator keeps a BackupSchedule for them."""

    schedule: CronSchedule = Field(..., description="Cron, as in BackupSchedule.")
    time_zone: Annotated[str, StringConstraints(pattern=TIME_ZONE_PATTERN, max_length=64)] = "UTC"
    suspend: bool = False
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    executor: schema.Optional[BackupExecutor] = None


def tenant_schedule_spec(
    tenant_name: str, backup: TenantBackupSpec, database: DatabaseRef
) -> BackupScheduleSpec:
    """The BackupSchedule a Tenant's `backup` block stands for."""
    return BackupScheduleSpec(
        schedule=backup.schedule,
        time_zone=backup.time_zone,
        suspend=backup.suspend,
        retention=backup.retention,
        template=BackupSpec.model_validate(
            {
                "type": BackupType.TENANT,
                "tenantRef": {"name": tenant_name},
                "database": database.model_dump(by_alias=True),
                "storage": backup.storage.model_dump(by_alias=True, exclude_none=True),
                "executor": backup.executor,
            }
        ),
    )
