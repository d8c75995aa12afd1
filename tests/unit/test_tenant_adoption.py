"""Tenant manifests for tenants the application created (no database, no cluster)."""

from __future__ import annotations

import pytest

from orion_operator.api.tenant import ProvisioningMode, TenantSpec
from orion_operator.settings import OperatorSettings
from orion_operator.tenancy.adoption import adoption_manifest, unmanaged
from orion_operator.tenancy.mapping import table_of
from orion_operator.tenancy.rows import TenantRecord, TenantState

ACME = TenantRecord("acme", "Acme Corp", "pro", TenantState.SUSPENDED)


def test_only_tenants_without_an_object_are_unmanaged() -> None:
    globex = TenantRecord("globex", "globex", "free", TenantState.ACTIVE)
    assert unmanaged([ACME, globex], {"acme"}) == [globex]


def test_the_manifest_describes_the_row_as_it_is_and_validates() -> None:
    adoption = adoption_manifest(ACME, "prod", ProvisioningMode.OBSERVE)
    assert adoption.manifest == {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "acme", "namespace": "prod"},
        "spec": {
            "tenantId": "acme",
            "provisioning": "observe",
            "suspended": True,
            "displayName": "Acme Corp",
            "plan": "pro",
        },
    }
    spec = TenantSpec.model_validate(adoption.manifest["spec"])
    assert spec.suspended and spec.provisioning is ProvisioningMode.OBSERVE


@pytest.mark.parametrize("tenant_id", ["Acme", "acme_corp", "a" * 64])
def test_ids_a_tenant_cannot_name_are_refused_with_the_reason(tenant_id: str) -> None:
    adoption = adoption_manifest(
        TenantRecord(tenant_id, "x", "free", TenantState.ACTIVE), "ns", ProvisioningMode.OBSERVE
    )
    assert adoption.manifest is None
    assert adoption.problem is not None and "not a DNS label" in adoption.problem


def test_an_unknown_plan_is_left_to_the_app_in_observe_and_refused_in_ensure() -> None:
    legacy = TenantRecord("initech", "Initech", "gold-2019", TenantState.ACTIVE)
    observed = adoption_manifest(legacy, "ns", ProvisioningMode.OBSERVE)
    assert observed.manifest is not None and "plan" not in observed.manifest["spec"]
    ensured = adoption_manifest(legacy, "ns", ProvisioningMode.ENSURE)
    assert ensured.manifest is None
    assert ensured.problem is not None and "provisioning observe" in ensured.problem


def test_the_operator_wide_mapping_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ORION_TENANT_TABLE",
        '{"table": "organizations", "idColumn": "slug", "extraColumns": {"region": "eu"}}',
    )
    monkeypatch.setenv("ORION_TENANT_PROVISIONING", "observe")
    settings = OperatorSettings()
    table = table_of(settings.tenant_table)
    assert (table.table, table.id_column, table.name_column) == ("organizations", "slug", "name")
    assert dict(table.extra_columns) == {"region": "eu"}
    assert settings.tenant_provisioning is ProvisioningMode.OBSERVE
