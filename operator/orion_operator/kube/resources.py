"""lightkube resource classes for our own kinds, for status patches outside kopf's handlers."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from orion_operator import API_GROUP, API_VERSION

ApiDeploymentResource = create_namespaced_resource(
    API_GROUP, API_VERSION, "ApiDeployment", "apideployments"
)


async def merge_patch_status(
    client: AsyncClient, resource: Any, name: str, namespace: str, status: dict[str, Any]
) -> None:
    """JSON merge patch of the status subresource (None deletes a key)."""
    await client.patch(
        resource.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
    )


BackupResource = create_namespaced_resource(API_GROUP, API_VERSION, "Backup", "backups")
TenantResource = create_namespaced_resource(API_GROUP, API_VERSION, "Tenant", "tenants")
RestoreResource = create_namespaced_resource(API_GROUP, API_VERSION, "Restore", "restores")
BackupScheduleResource = create_namespaced_resource(
    API_GROUP, API_VERSION, "BackupSchedule", "backupschedules"
)
DatabaseMaintenanceResource = create_namespaced_resource(
    API_GROUP, API_VERSION, "DatabaseMaintenance", "databasemaintenances"
)
