from __future__ import annotations

import pytest
from pydantic import ValidationError

from orion_operator.api.tenant import Plan, ProvisioningMode, TenantDeletionPolicy, TenantSpec
from orion_operator.settings import OperatorSettings


def test_defaults_follow_the_design() -> None:
    spec = TenantSpec.model_validate({})
    assert spec.tenant_id is None
    assert spec.plan is Plan.FREE
    # Unset: the operator's ORION_TENANT_PROVISIONING (ensure) decides.
    assert spec.provisioning is None
    assert OperatorSettings().tenant_provisioning is ProvisioningMode.ENSURE
    assert spec.deletion_policy is TenantDeletionPolicy.RETAIN
    assert spec.database.secret_ref.name == "orion-database"
    assert spec.database.secret_ref.key == "DATABASE_URL"


@pytest.mark.parametrize("tenant_id", ["Acme", "-acme", "acme_", "a" * 64, ""])
def test_bad_tenant_ids_are_rejected(tenant_id: str) -> None:
    with pytest.raises(ValidationError, match="tenantId"):
        TenantSpec.model_validate({"tenantId": tenant_id})


def test_camel_case_fields_round_trip() -> None:
    spec = TenantSpec.model_validate(
        {
            "tenantId": "acme-2",
            "displayName": "Acme",
            "plan": "pro",
            "database": {"secretRef": {"name": "db", "key": "URL"}},
        }
    )
    dumped = spec.model_dump(exclude_none=True)
    assert dumped["tenantId"] == "acme-2"
    assert dumped["database"] == {"secretRef": {"name": "db", "key": "URL"}}
