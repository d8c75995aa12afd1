"""The CRD YAML is generated from the models, committed, and structurally valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orion_operator.api.crds import dump_crd, dump_policies, render_admission_policies, render_crds

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
ADMISSION_DIR = CRDS_DIR.parent / "admission"


def _schemas(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _schemas(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _schemas(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _schemas(node["additionalProperties"], f"{path}{{}}")
    return found


def test_committed_crds_match_the_models() -> None:
    rendered = render_crds()
    # The kopf.dev peering CRDs beside ours are written by hand.
    committed = {path.name for path in CRDS_DIR.glob("*.orion.io.yaml")}
    assert committed == set(rendered), "run `orion-operator crds` and commit crds/"
    for name, manifest in rendered.items():
        assert (CRDS_DIR / name).read_text() == dump_crd(manifest), (
            f"crds/{name} drifted from the models: run `orion-operator crds`"
        )


def test_committed_admission_policies_match_the_models() -> None:
    rendered = render_admission_policies()
    assert {path.name for path in ADMISSION_DIR.glob("*.yaml")} == set(rendered)
    for name, manifests in rendered.items():
        assert (ADMISSION_DIR / name).read_text() == dump_policies(manifests), (
            f"admission/{name} drifted from the models: run `orion-operator crds`"
        )


def test_schemas_are_structural() -> None:
    for name, manifest in render_crds().items():
        for version in manifest["spec"]["versions"]:
            root = version["schema"]["openAPIV3Schema"]
            for path, schema in _schemas(root):
                assert "$ref" not in schema, f"{name} {path}: $ref is not allowed"
                assert "anyOf" not in schema or "type" in schema, f"{name} {path}: untyped anyOf"
                if not schema.get("x-kubernetes-int-or-string"):
                    assert "type" in schema, f"{name} {path}: every field needs a type"
                assert schema.get("default", "") is not None, f"{name} {path}: null default"
                for bound in ("exclusiveMinimum", "exclusiveMaximum"):
                    assert isinstance(schema.get(bound, True), bool), f"{name} {path}: {bound}"


def test_every_kind_has_status_categories_and_ready_column() -> None:
    for manifest in render_crds().values():
        names = manifest["spec"]["names"]
        assert names["categories"] == ["orion"]
        assert names["shortNames"]
        version = manifest["spec"]["versions"][0]
        assert version["subresources"]["status"] == {}
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        assert {"conditions", "observedGeneration", "phase"} <= set(status)
        columns = {column["name"] for column in version["additionalPrinterColumns"]}
        assert {"Phase", "Age"} <= columns


def test_tenant_schema_rejects_what_the_docs_say() -> None:
    tenant = render_crds()["tenants.orion.io.yaml"]["spec"]["versions"][0]
    spec = tenant["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["tenantId"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert spec["properties"]["tenantId"]["maxLength"] == 63
    assert spec["properties"]["plan"]["enum"] == ["free", "starter", "pro", "enterprise"]
    assert spec["properties"]["plan"]["default"] == "free"
    assert any("tenantId" in rule["rule"] for rule in spec["x-kubernetes-validations"])
