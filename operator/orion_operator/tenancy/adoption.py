"""Tenants the application has that no Tenant object describes, and manifests to adopt them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orion_operator import API_GROUP, API_VERSION
from orion_operator.api.common import DNS_LABEL_PATTERN
from orion_operator.api.tenant import Plan, ProvisioningMode
from orion_operator.tenancy.rows import TenantRecord, TenantState

DISPLAY_NAME_MAX = 200


@dataclass(frozen=True)
class Adoption:
    record: TenantRecord
    manifest: dict[str, Any] | None  # None when it cannot be adopted; `problem` says why
    problem: str | None = None


def unmanaged(records: Iterable[TenantRecord], described_ids: set[str]) -> list[TenantRecord]:
    return [record for record in records if record.tenant_id not in described_ids]


def adoption_manifest(
    record: TenantRecord, namespace: str, provisioning: ProvisioningMode
) -> Adoption:
    """A Tenant that describes `record` as it is, so applying it changes nothing in the row."""
    if not re.match(DNS_LABEL_PATTERN, record.tenant_id) or len(record.tenant_id) > 63:
        return Adoption(
            record,
            None,
            f'tenant id "{record.tenant_id}" is not a DNS label (a-z, 0-9, "-", at most 63): '
            "a Tenant cannot name it",
        )
    spec: dict[str, Any] = {
        "tenantId": record.tenant_id,
        "provisioning": provisioning.value,
        "suspended": record.state is TenantState.SUSPENDED,
    }
    if record.name != record.tenant_id:
        spec["displayName"] = record.name[:DISPLAY_NAME_MAX]
    if record.plan in {plan.value for plan in Plan}:
        spec["plan"] = record.plan
    elif provisioning is ProvisioningMode.ENSURE:
        # ensure would overwrite the row's plan with the default one.
        return Adoption(
            record,
            None,
            f'plan "{record.plan}" is not one of {", ".join(p.value for p in Plan)}: '
            "adopt it with provisioning observe",
        )
    manifest = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Tenant",
        "metadata": {"name": record.tenant_id, "namespace": namespace},
        "spec": spec,
    }
    return Adoption(record, manifest)
