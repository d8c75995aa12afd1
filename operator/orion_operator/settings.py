"""Operator-wide settings, read once from the environment (ORION_* variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orion_operator import __version__
from orion_operator.api.tenant import ProvisioningMode, TenantTableMapping

# The runbook lets platform admins live in "User" without a tenant.
DEFAULT_INTEGRITY_ALLOW_LIST = {"User": "\"role\" = 'platform_admin'"}


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORION_", extra="ignore")

    database_connect_timeout_seconds: int = Field(5, ge=1, le=60)
    retry_initial_delay_seconds: float = Field(
        5.0, gt=0, description="First retry delay after a transient failure; doubles each time."
    )
    retry_max_delay_seconds: float = Field(300.0, gt=0)
    metrics_port: int = Field(
        8080, ge=0, le=65535, description="Prometheus /metrics port; 0 turns the endpoint off."
    )
    metrics_host: str = Field("0.0.0.0", description="Address the metrics endpoint listens on.")

    backup_executor: Literal["inline", "job"] = Field(
        "inline", description="Where Backups without spec.executor run."
    )
    image: str = Field(
        f"orion-operator:{__version__}",
        description="The operator's own image; backup Jobs run `orion-operator backup-run` in it.",
    )
    job_service_account: str | None = Field(
        None, description="ServiceAccount of backup Job pods (they need no API access)."
    )
    job_poll_seconds: float = Field(5.0, gt=0, description="How often a running Job is checked.")

    peering_priority: int = Field(
        0, ge=0, description="kopf peering priority; 0 draws a random one at start."
    )
    peering_lifetime_seconds: int = Field(
        20, ge=5, le=600, description="How long a silent replica counts as alive (takeover bound)."
    )

    tenant_provisioning: ProvisioningMode = Field(
        ProvisioningMode.ENSURE, description="Provisioning of Tenants without spec.provisioning."
    )
    tenant_table: TenantTableMapping = Field(
        default_factory=TenantTableMapping,
        description="JSON: the application's tenants table for Tenants without "
        'spec.tenantTable, e.g. {"table": "tenants", "idColumn": "slug"}.',
    )
    integrity_allow_list: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_INTEGRITY_ALLOW_LIST),
        description='JSON: table → SQL condition; rows with a NULL "tenantId" that match it '
        "are not integrity violations.",
    )
    final_backup_poll_seconds: float = Field(
        5.0, gt=0, description="How often a deleting Tenant checks its final Backup."
    )
    tenant_resync_seconds: float = Field(
        60.0,
        gt=0,
        description="How long after its last reconcile a Tenant is reconciled again (row "
        "counts, rows edited by hand, the integrity check) without a spec change.",
    )
    tenant_resync_workers: int = Field(
        4, ge=1, le=64, description="Tenant resyncs run at once; more wait, none are dropped."
    )

    def retry_delay(self, retry: int) -> float:
        """Exponential backoff for the `retry`-th attempt (0-based), capped."""
        return min(self.retry_max_delay_seconds, self.retry_initial_delay_seconds * 2**retry)
