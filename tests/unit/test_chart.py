"""The Helm chart, the kustomize base rendered from it, and the image's entry points."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "orion-operator"
HELM = str(ROOT / "scripts" / "helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check)


def render(*values: str) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    out = helm(
        "template",
        "orion",
        str(CHART),
        "--namespace",
        "orion-system",
        "--kube-version",
        "1.33.0",
        "--include-crds",
        *sets,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def test_the_chart_lints_clean():
    linted = helm("lint", str(CHART), "--strict", check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_chart_ships_exactly_the_generated_crds():
    shipped = {
        doc["metadata"]["name"]: doc
        for doc in render()
        if doc["kind"] == "CustomResourceDefinition"
    }
    committed = {
        doc["metadata"]["name"]: doc
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        for doc in [yaml.safe_load(path.read_text())]
    }
    assert shipped == committed


def operator_roles(docs: list[dict[str, Any]]) -> list[str]:
    """The kinds of the operator's own RBAC objects, not the ones for people."""
    return kinds([doc for doc in docs if not aggregated(doc)])


def aggregated(doc: dict[str, Any]) -> bool:
    labels = doc["metadata"].get("labels") or {}
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


def test_cluster_wide_by_default_and_roles_per_namespace_when_listed():
    cluster_wide = render()
    assert operator_roles(cluster_wide).count("ClusterRole") == 2
    assert "Role" not in kinds(cluster_wide)
    assert "ClusterKopfPeering" in kinds(cluster_wide)

    scoped = render("watchNamespaces={shop,billing}")
    roles = [doc for doc in scoped if doc["kind"] == "Role"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["billing", "shop"]
    # Secrets are then readable only in those namespaces.
    cluster_roles = [doc for doc in scoped if doc["kind"] == "ClusterRole"]
    assert all(
        "secrets" not in rule.get("resources", [])
        for role in cluster_roles
        for rule in role["rules"]
    )
    peerings = [doc for doc in scoped if doc["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["billing", "shop"]
    deployment = next(doc for doc in scoped if doc["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args and "--namespace=billing" in args


def test_the_roles_for_people_grant_only_orion_objects_and_can_be_left_out():
    for_people = [doc for doc in render() if aggregated(doc)]
    assert sorted(doc["metadata"]["name"] for doc in for_people) == [
        "orion-orion-operator-edit",
        "orion-orion-operator-view",
    ]
    for role in for_people:
        assert all(rule["apiGroups"] == ["orion.io"] for rule in role["rules"])
        assert not any(r.endswith("/status") for rule in role["rules"] for r in rule["resources"])
    assert not [doc for doc in render("aggregateToDefaultRoles=false") if aggregated(doc)]


def test_no_rule_grants_everything():
    for doc in render() + render("watchNamespaces={shop}"):
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)


def test_the_operator_pod_is_locked_down_and_runs_two_replicas():
    deployment = next(doc for doc in render() if doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {each["name"]: each.get("value") for each in container["env"]}
    assert env["ORION_IMAGE"] == "orion-operator:0.1.0"


def test_alert_settings_go_into_a_secret_or_come_from_an_existing_one():
    created = render("alerts.settings.SLACK_WEBHOOK_URL=https://hooks.example/x")
    secret = next(doc for doc in created if doc["kind"] == "Secret")
    assert secret["stringData"] == {"SLACK_WEBHOOK_URL": "https://hooks.example/x"}
    existing = render("alerts.existingSecret=my-alerts")
    assert "Secret" not in kinds(existing)
    deployment = next(doc for doc in existing if doc["kind"] == "Deployment")
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"secretRef": {"name": "my-alerts", "optional": True}}]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("replicas=0", "/replicas"),
        ("backupExecutor=cron", "/backupExecutor"),
        ("watchNamespaces={Bad_Name}", "/watchNamespaces/0"),
        ("alerts.settings.SMTP_PASSWORD=x", "SMTP_PASSWORD"),
        ("surprise=1", "surprise"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(value: str, field: str):
    rejected = helm(
        "template", "orion", str(CHART), "--kube-version", "1.33.0", "--set", value, check=False
    )
    assert rejected.returncode != 0
    assert field in rejected.stderr


def test_monitoring_objects_are_optional():
    assert "ServiceMonitor" not in kinds(render())
    monitored = render("metrics.serviceMonitor.enabled=true", "prometheusRule.enabled=true")
    rule = next(doc for doc in monitored if doc["kind"] == "PrometheusRule")
    expressions = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any(
        "orion_backup_last_success_timestamp_seconds" in e and "93600" in e for e in expressions
    )


def test_the_kustomize_base_is_the_rendered_chart(tmp_path: Path):
    fresh = tmp_path / "base"
    subprocess.run(
        [str(ROOT / "scripts" / "render-manifests"), str(fresh)], check=True, capture_output=True
    )
    for path in fresh.iterdir():
        committed = ROOT / "manifests" / "base" / path.name
        assert committed.read_text() == path.read_text(), (
            f"manifests/base/{path.name} is stale: run scripts/render-manifests"
        )


def test_the_images_entry_points_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.M)
    command = re.search(r'^CMD \["([^"]+)"', dockerfile, re.M)
    assert entrypoint and command
    scripts = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert entrypoint.group(1) in scripts
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert command.group(1) in subcommands
    # What backup Jobs run, and the variable that points the dump tools at the client install.
    assert "backup-run" in subcommands
    assert "PG_BINDIR=" in dockerfile
    assert (
        'os.environ.get("PG_BINDIR")'
        in (ROOT / "operator" / "orion_operator" / "backup" / "dump.py").read_text()
    )
