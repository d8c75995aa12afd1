"""The DatabaseMaintenance custom resource: ANALYZE, VACUUM, retention deletes and a size report."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import CustomResource, schema
from pydantic import ConfigDict, Field, StringConstraints

from orion_operator import API_GROUP, API_VERSION
from orion_operator.api.backupschedule import TIME_ZONE_PATTERN, CronSchedule
from orion_operator.api.common import Conditions, DatabaseRef

# A table or column name as PostgreSQL spells it; always quoted, never interpolated.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Tables = Annotated[list[Identifier], Field(max_length=200)]
# Zero-padded 24-hour time, so the API server can compare windows as strings.
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
Clock = Annotated[str, StringConstraints(pattern=CLOCK_PATTERN, max_length=5)]
AGE_PATTERN = r"^([0-9]+(w|d|h|m))+$"
Age = Annotated[str, StringConstraints(pattern=AGE_PATTERN, max_length=32)]
# Any new value of this annotation asks for a run now. Not under orion.io/: kopf ignores
# changes to annotations under its own storage prefix.
RUN_ANNOTATION = f"maintenance.{API_GROUP}/run"
MAX_BATCH_SIZE = 100_000


class MaintenancePhase(StrEnum):
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    ERROR = "Error"


class TaskOutcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REFUSED = "Refused"


class AnalyzeTask(schema.BaseModel):
    """`ANALYZE` (refresh planner statistics)."""

    tables: Tables = Field(default_factory=list, description="Tables to analyze; empty: all.")


class VacuumWindow(schema.BaseModel):
    """Times of day, in spec.timeZone, when VACUUM FULL may run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.end > self.start", "message": "window end must be after start"}
            ]
        }
    )

    start: Clock = Field(..., description="HH:MM, 24-hour.")
    end: Clock = Field(..., description="HH:MM, 24-hour, after start (no crossing midnight).")


class VacuumTask(schema.BaseModel):
    """`VACUUM (ANALYZE)`; `VACUUM (FULL, ANALYZE)` only with full: true and inside window."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.full || has(self.window)",
                    "message": "full: true needs a window (VACUUM FULL locks each table)",
                }
            ]
        }
    )

    tables: Tables = Field(default_factory=list, description="Tables to vacuum; empty: all.")
    full: bool = Field(
        False, description="Rewrite tables (VACUUM FULL): locks each table while it runs."
    )
    window: schema.Optional[VacuumWindow] = Field(
        None, description="When a full vacuum may run; outside it the task is refused."
    )


class RetentionRule(schema.BaseModel):
    """Delete rows older than an age, in short batches."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.olderThan.matches('^(0+(w|d|h|m))+$')",
                    "message": "olderThan must be more than zero",
                }
            ]
        }
    )

    table: Identifier = Field(..., description='Table, e.g. "AuditLog".')
    timestamp_column: Identifier = Field(..., description='Timestamp column, e.g. "createdAt".')
    older_than: Age = Field(..., description="Rows older than this are deleted: 365d, 12h, 2w.")
    batch_size: int = Field(
        5000, ge=1, le=MAX_BATCH_SIZE, description="Rows per batch, each its own transaction."
    )


class ReportTask(schema.BaseModel):
    """Largest tables (pg_total_relation_size) and connection use, into status."""

    top: int = Field(10, ge=1, le=100, description="How many of the largest tables.")


class MaintenanceTasks(schema.BaseModel):
    analyze: schema.Optional[AnalyzeTask] = None
    vacuum: schema.Optional[VacuumTask] = None
    retention: list[RetentionRule] = Field(default_factory=list, max_length=50)
    report: schema.Optional[ReportTask] = None


class DatabaseMaintenanceSpec(schema.BaseModel):
    database: DatabaseRef = Field(default_factory=DatabaseRef)
    schedule: CronSchedule = Field(
        ..., description="Cron, five fields (minute hour day month weekday) or @daily etc."
    )
    time_zone: Annotated[str, StringConstraints(pattern=TIME_ZONE_PATTERN, max_length=64)] = Field(
        "UTC", description="IANA time zone of the schedule and of vacuum.window."
    )
    suspend: bool = Field(False, description="No scheduled runs while true (on-demand still runs).")
    statement_timeout_seconds: int = Field(
        300, ge=1, le=86400, description="statement_timeout of every maintenance statement."
    )
    lock_timeout_seconds: int = Field(
        10, ge=1, le=3600, description="lock_timeout: how long a statement may wait for a lock."
    )
    tasks: MaintenanceTasks = Field(default_factory=MaintenanceTasks)


class TaskStatus(schema.BaseModel):
    name: str
    result: TaskOutcome
    reason: str = ""
    message: str = ""
    duration_seconds: float = 0.0


class RetentionStatus(schema.BaseModel):
    table: str
    deleted: int = 0
    batches: int = 0


class TableSizeStatus(schema.BaseModel):
    name: str
    total_bytes: int
    total: str = Field(..., description="pg_size_pretty of totalBytes.")


class ConnectionsStatus(schema.BaseModel):
    used: int
    max: int
    percent: int


class ReportStatus(schema.BaseModel):
    tables: list[TableSizeStatus] = Field(default_factory=list)
    connections: schema.Optional[ConnectionsStatus] = None


class LastRunStatus(schema.BaseModel):
    started_at: schema.Optional[datetime.datetime] = None
    trigger: str = Field("", description="schedule, or the run annotation's value.")
    tasks: list[TaskStatus] = Field(default_factory=list)
    retention: list[RetentionStatus] = Field(default_factory=list)
    report: schema.Optional[ReportStatus] = None


class DatabaseMaintenanceStatus(schema.BaseModel):
    observed_generation: schema.Optional[int] = None
    phase: schema.Optional[MaintenancePhase] = None
    conditions: Conditions = Field(default_factory=list)
    last_schedule_time: schema.Optional[datetime.datetime] = Field(
        None, description="The fire time most recently handled."
    )
    last_run_time: schema.Optional[datetime.datetime] = None
    next_run_time: schema.Optional[datetime.datetime] = None
    last_trigger: schema.Optional[str] = Field(
        None, description=f"The {RUN_ANNOTATION} value last acted on."
    )
    last_run: schema.Optional[LastRunStatus] = None


# kube-custom-resource configures CRDs through metaclass keywords, which mypy cannot follow.
class DatabaseMaintenance(  # type: ignore[call-arg,metaclass]
    CustomResource,
    version=API_VERSION,
    short_names=["dbm"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Last", "type": "date", "jsonPath": ".status.lastRunTime"},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextRunTime"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    ],
):
    """Scheduled ANALYZE / VACUUM, batched retention deletes and a table-size report."""

    spec: DatabaseMaintenanceSpec
    status: DatabaseMaintenanceStatus = Field(default_factory=DatabaseMaintenanceStatus)
