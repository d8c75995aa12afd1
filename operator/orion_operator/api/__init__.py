"""Pydantic models of every custom resource: the single source of the CRD schemas."""

from orion_operator.api.apideployment import ApiDeployment, ApiDeploymentSpec
from orion_operator.api.backup import Backup, BackupSpec
from orion_operator.api.backupschedule import BackupSchedule, BackupScheduleSpec
from orion_operator.api.maintenance import DatabaseMaintenance, DatabaseMaintenanceSpec
from orion_operator.api.restore import Restore, RestoreSpec
from orion_operator.api.tenant import Tenant, TenantSpec, TenantStatus

# Every kind the operator serves; `orion-operator crds` renders one CRD for each.
CUSTOM_RESOURCES = (ApiDeployment, Backup, BackupSchedule, Restore, Tenant, DatabaseMaintenance)

__all__ = [
    "CUSTOM_RESOURCES",
    "ApiDeployment",
    "ApiDeploymentSpec",
    "Backup",
    "BackupSchedule",
    "BackupScheduleSpec",
    "BackupSpec",
    "DatabaseMaintenance",
    "DatabaseMaintenanceSpec",
    "Restore",
    "RestoreSpec",
    "Tenant",
    "TenantSpec",
    "TenantStatus",
]
