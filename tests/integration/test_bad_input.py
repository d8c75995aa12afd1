"""Bad input is refused at `kubectl apply`, naming the field, and never harms the operator.

Every manifest in tests/bad-input/ is applied client side and server side with
`--validate=strict` against the control plane with the CRDs installed and the operator running;
the refusal must name the field in the file's `# expect:` header. Manifests in
tests/bad-input/status/ pass the schema but cannot be carried out: the operator must say so in
the Ready condition, naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    tenant,
    wait_for,
)

CORPUS = Path(__file__).resolve().parents[1] / "bad-input"
KINDS = {"Tenant", "Backup", "BackupSchedule", "Restore", "ApiDeployment", "DatabaseMaintenance"}
APPLY_MODES = {
    "client-side": ["apply", "--validate=strict"],
    "server-side": ["apply", "--server-side", "--validate=strict", "--field-manager=bad-input"],
}


@dataclass(frozen=True)
class BadInput:
    path: Path
    header: str  # expect (refused at apply) or expect-status (reported by the operator)
    names: str  # what the refusal or the condition's message must contain
    documents: list[dict[str, Any]]

    @property
    def bad(self) -> dict[str, Any]:
        return self.documents[-1]

    @property
    def resource(self) -> str:
        return f"{self.bad['kind'].lower()}.orion.io/{self.bad['metadata']['name']}"


def load(path: Path) -> BadInput:
    text = path.read_text()
    headers = {
        key.strip(): value.strip()
        for line in text.splitlines()
        if line.startswith("# expect")
        for key, value in [line[2:].split(":", 1)]
    }
    assert len(headers) == 1, f"{path.name}: one '# expect:' or '# expect-status:' header"
    [(header, names)] = headers.items()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    assert 1 <= len(documents) <= 2, f"{path.name}: one object, or an object and its update"
    return BadInput(path, header, names, documents)


REFUSED = sorted(CORPUS.glob("*.yaml"))
REPORTED = sorted((CORPUS / "status").glob("*.yaml"))


def test_the_corpus_covers_every_kind_with_named_fields():
    inputs = [load(path) for path in REFUSED]
    assert {i.bad["kind"] for i in inputs} == KINDS
    assert all(i.header == "expect" and i.names for i in inputs)
    assert all(load(path).header == "expect-status" for path in REPORTED)
    # The mistakes the schema must catch, each at least once.
    names = " ".join(i.names for i in inputs)
    for field in ("spec.image", "spec.minReplicas", "spec.schedule", "spec.replicas"):
        assert field in names


def kubectl_apply(mode: str, document: dict[str, Any], namespace: str) -> Any:
    return kubectl(
        *APPLY_MODES[mode], "-n", namespace, "-f", "-", input=json.dumps(document), check=False
    )


def stored(resource: str, namespace: str) -> dict[str, Any] | None:
    found = kubectl("get", resource, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        assert "NotFound" in found.stderr, found.stderr
        return None
    return json.loads(found.stdout)


@pytest.mark.parametrize("mode", sorted(APPLY_MODES))
@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_bad_input_is_refused_naming_the_field(
    operator: OperatorProcess, namespace: str, path: Path, mode: str
):
    bad_input = load(path)
    for earlier in bad_input.documents[:-1]:
        accepted = kubectl_apply(mode, earlier, namespace)
        assert accepted.returncode == 0, accepted.stderr
    before = stored(bad_input.resource, namespace)

    refused = kubectl_apply(mode, bad_input.bad, namespace)

    assert refused.returncode != 0, f"{path.name} was accepted:\n{refused.stdout}"
    assert bad_input.names in refused.stderr, refused.stderr
    after = stored(bad_input.resource, namespace)
    if before is None:
        assert after is None, f"{bad_input.resource} exists after being refused"
    else:
        assert after is not None and after["spec"] == before["spec"]
    operator.assert_running()


def test_unknown_fields_are_dropped_silently_without_strict_validation(
    operator: OperatorProcess, namespace: str
):
    """Why the corpus applies with --validate=strict: without it a typo is lost, not refused."""
    typo = load(CORPUS / "tenant-unknown-field.yaml").bad
    assert typo["spec"] == {"planName": "pro"}
    lenient = kubectl(
        "apply", "--validate=ignore", "-n", namespace, "-f", "-", input=json.dumps(typo)
    )
    assert lenient.returncode == 0, lenient.stderr
    spec = get_json("tenant", typo["metadata"]["name"], "-n", namespace)["spec"]
    assert "planName" not in spec
    assert spec["plan"] == "free"  # the default, not what the author meant


@pytest.mark.parametrize("path", REPORTED, ids=[p.stem for p in REPORTED])
def test_input_the_schema_cannot_judge_is_reported_in_the_ready_condition(
    operator: OperatorProcess, namespace: str, path: Path
):
    bad_input = load(path)
    accepted = apply(bad_input.bad, namespace)
    assert accepted.returncode == 0, accepted.stderr

    def reported() -> dict[str, Any] | None:
        obj = stored(bad_input.resource, namespace) or {}
        ready = condition(obj)
        return ready if ready and ready["status"] == "False" else None

    ready = wait_for(reported, 60, f"{bad_input.resource} Ready=False")
    assert bad_input.names in ready["message"], ready
    assert ready["reason"] and ready["reason"] != "Synced"
    operator.assert_running()


def test_after_all_the_bad_input_the_operator_still_reconciles_a_good_tenant(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    for path in [*REFUSED, *REPORTED]:
        for document in load(path).documents:
            kubectl_apply("server-side", document, namespace)
    operator.assert_running()

    assert apply(database_secret(app_database.url), namespace).returncode == 0
    good = apply(tenant("after-bad-input", displayName="After", plan="pro"), namespace)
    assert good.returncode == 0, good.stderr

    def ready() -> dict[str, Any] | None:
        obj = get_json("tenant", "after-bad-input", "-n", namespace)
        found = condition(obj)
        return obj if found and found["status"] == "True" else None

    wait_for(ready, 90, "the good Tenant to be Ready")
    assert app_database.query(
        'SELECT id, plan FROM "Tenant" WHERE id = %s', ("after-bad-input",)
    ) == [("after-bad-input", "pro")]
    operator.assert_running()
