"""What the rollout gates read from the cluster: Secrets, ConfigMaps, Backups, the migration Job.

Reads only, through an injected lightkube client; each returns the view the state machine
(`rollout.machine`) takes.
"""

from __future__ import annotations

import datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from orion_operator.api.apideployment import ApiDeploymentSpec
from orion_operator.backup.job import job_outcome
from orion_operator.kube.owned import get_or_none
from orion_operator.kube.resources import BackupResource
from orion_operator.rollout.config import (
    ConfigKind,
    FoundObject,
    config_references,
    missing_configuration,
)
from orion_operator.rollout.gates import JobView, RecentBackup
from orion_operator.rollout.predeploy import BackupView, backup_view, recent_backup

_KINDS: dict[str, Any] = {"Secret": Secret, "ConfigMap": ConfigMap}


async def _found(client: AsyncClient, kind: ConfigKind, name: str, namespace: str) -> FoundObject:
    try:
        obj = await client.get(_KINDS[kind], name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return FoundObject(missing=True)
        if error.status.code == 403:
            return FoundObject(forbidden=True)
        raise
    keys = set(obj.data or {})
    if isinstance(obj, ConfigMap):
        keys |= set(obj.binaryData or {})
    return FoundObject(keys=frozenset(keys))


async def check_configuration(
    client: AsyncClient, namespace: str, spec: ApiDeploymentSpec
) -> tuple[str, ...]:
    """Every missing Secret, ConfigMap or key, in words; empty when all are there."""
    references = config_references(spec)
    objects = {}
    for kind, name in dict.fromkeys((ref.kind, ref.name) for ref in references):
        objects[(kind, name)] = await _found(client, kind, name, namespace)
    return tuple(missing_configuration(references, objects, namespace))


async def find_recent_backup(
    client: AsyncClient,
    namespace: str,
    spec: ApiDeploymentSpec,
    within: datetime.timedelta,
    now: datetime.datetime,
) -> RecentBackup:
    backups = [
        backup.to_dict() async for backup in client.list(BackupResource, namespace=namespace)
    ]
    name = recent_backup(backups, spec.dependencies.database.secret_ref, within, now)
    return RecentBackup(name)


async def read_backup(client: AsyncClient, namespace: str, name: str) -> BackupView:
    found = await get_or_none(client, BackupResource, name, namespace)
    return backup_view(found.to_dict() if found is not None else None)


async def read_migration_job(client: AsyncClient, namespace: str, name: str) -> JobView:
    found = await get_or_none(client, Job, name, namespace)
    if found is None:
        return JobView("missing")
    pods = [
        pod.to_dict()
        async for pod in client.list(Pod, namespace=namespace, labels={"job-name": name})
    ]
    outcome = job_outcome(found.to_dict(), pods, what="migration")
    return JobView(outcome.state, outcome.reason, outcome.message)
