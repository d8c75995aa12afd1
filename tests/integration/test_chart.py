"""The rendered Helm chart and the kustomize base apply to the real control plane."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orion_operator.devenv.kubectl import kubectl
from tests.integration.conftest import get_json, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def release(cluster: str) -> Iterator[tuple[str, str]]:
    name, namespace = f"orion-{uuid.uuid4().hex[:6]}", f"orion-system-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    yield name, namespace
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    kubectl(
        "delete",
        "clusterrole,clusterrolebinding,clusterkopfpeering",
        "-l",
        f"app.kubernetes.io/instance={name}",
        check=False,
    )


def rendered(name: str, namespace: str) -> str:
    return subprocess.run(
        [
            str(ROOT / "scripts" / "helm"),
            "template",
            name,
            str(ROOT / "charts" / "orion-operator"),
            "--namespace",
            namespace,
            "--kube-version",
            "1.33.0",
            "--include-crds",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_chart_applies_with_a_server_side_dry_run_then_for_real(release: tuple[str, str]):
    name, namespace = release
    manifest = rendered(name, namespace)
    apply = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "helm-test",
        "-f",
        "-",
    ]
    dry = kubectl(*apply, "--dry-run=server", input=manifest, check=False)
    assert dry.returncode == 0, dry.stderr
    real = kubectl(*apply, input=manifest, check=False)
    assert real.returncode == 0, real.stderr

    deployment = f"{name}-orion-operator"
    ready = wait_for(
        lambda: (
            (get_json("deployment", deployment, "-n", namespace).get("status") or {}).get(
                "availableReplicas"
            )
            == 2
        ),
        what="both operator replicas to be available",
    )
    assert ready
    # The ServiceAccount may do what the operator does, and not more.
    account = f"system:serviceaccount:{namespace}:{deployment}"
    can = kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={account}").stdout
    assert "*" not in [line.split()[0] for line in can.splitlines()[1:] if line.split()]
    for allowed in (("get", "secrets"), ("create", "jobs.batch"), ("patch", "backups.orion.io")):
        assert (
            kubectl(
                "auth", "can-i", *allowed, "-n", namespace, f"--as={account}", check=False
            ).stdout.strip()
            == "yes"
        ), allowed
    for denied in (("delete", "secrets"), ("create", "secrets"), ("delete", "deployments.apps")):
        assert (
            kubectl(
                "auth", "can-i", *denied, "-n", namespace, f"--as={account}", check=False
            ).stdout.strip()
            == "no"
        ), denied


def test_namespace_viewers_read_orion_objects_and_editors_declare_them(
    release: tuple[str, str],
):
    name, namespace = release
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager", "helm-test", "-f", "-",
        input=rendered(name, namespace),
    )  # fmt: skip
    for user, role in (("viewer", "view"), ("editor", "edit")):
        kubectl(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}",
            f"--user={user}", "-n", namespace,
        )  # fmt: skip

    def can(user: str, verb: str, resource: str, subresource: str = "") -> bool:
        answer = kubectl(
            "auth", "can-i", verb, resource, f"--subresource={subresource}",
            "-n", namespace, f"--as={user}", check=False,
        )  # fmt: skip
        return answer.stdout.strip() == "yes"

    # The built-in roles pick up the chart's rules through the aggregation controller.
    wait_for(lambda: can("viewer", "list", "tenants.orion.io"), what="view to include Tenants")
    wait_for(lambda: can("editor", "create", "backups.orion.io"), what="edit to include Backups")
    for kind in ("tenants", "backups", "backupschedules", "restores", "apideployments"):
        assert can("viewer", "get", f"{kind}.orion.io"), kind
        assert not can("viewer", "create", f"{kind}.orion.io"), kind
        assert can("editor", "delete", f"{kind}.orion.io"), kind
    assert can("viewer", "watch", "databasemaintenances.orion.io")
    assert can("editor", "patch", "apideployments.orion.io", "scale")
    assert can("viewer", "get", "apideployments.orion.io", "scale")
    assert not can("viewer", "patch", "apideployments.orion.io", "scale")
    assert not can("editor", "patch", "tenants.orion.io", "status")  # status is the operator's


def test_the_kustomize_base_applies_cleanly(cluster: str):
    built = kubectl("kustomize", str(ROOT / "manifests" / "base")).stdout
    apply = ["apply", "--server-side", "--force-conflicts", "--field-manager", "kustomize-test"]
    # The namespace first: a dry run cannot place objects in a namespace that does not exist.
    kubectl(*apply, "-f", str(ROOT / "manifests" / "base" / "namespace.yaml"))
    try:
        dry = kubectl(*apply, "--dry-run=server", "-f", "-", input=built, check=False)
        assert dry.returncode == 0, dry.stderr
        real = kubectl(*apply, "-f", "-", input=built, check=False)
        assert real.returncode == 0, real.stderr
        wait_for(
            lambda: (
                (
                    get_json("deployment", "orion-operator", "-n", "orion-system").get("status")
                    or {}
                ).get("availableReplicas")
                == 2
            ),
            what="the kustomize-installed operator Deployment to be available",
        )
    finally:
        kubectl("delete", "namespace", "orion-system", "--wait=false", check=False)
        kubectl(
            "delete",
            "clusterrole,clusterrolebinding,clusterkopfpeering",
            "-l",
            "app.kubernetes.io/instance=orion-operator",
            check=False,
        )


def test_the_samples_kustomization_lists_every_sample_and_applies_cleanly(cluster: str):
    samples = ROOT / "manifests" / "samples"
    built = kubectl("kustomize", str(samples)).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    in_files = {
        (doc["kind"], doc["metadata"]["name"])
        for path in samples.glob("*.yaml")
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == in_files
    assert {"Tenant", "BackupSchedule", "ApiDeployment", "DatabaseMaintenance"} <= {
        kind for kind, _ in in_files
    }

    # Not orion-test-* namespaces: no operator under test acts on the samples here.
    namespaces = [f"orion-samples-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for namespace in namespaces:
        kubectl("create", "namespace", namespace)
    try:
        apply = ["apply", "--server-side", "--field-manager", "samples-test", "-n", namespaces[0]]
        dry = kubectl(*apply, "--dry-run=server", "-f", "-", input=built, check=False)
        assert dry.returncode == 0, dry.stderr
        assert kubectl("get", "orion", "-n", namespaces[0], "-o", "name").stdout.strip() == ""
        real = kubectl(*apply, "-f", "-", input=built, check=False)
        assert real.returncode == 0, real.stderr
        listed = json.loads(kubectl("get", "orion", "-n", namespaces[0], "-o", "json").stdout)
        assert {(o["kind"], o["metadata"]["name"]) for o in listed["items"]} == in_files

        # What `scripts/run` does, twice: the folder as a kustomization; the second is a no-op.
        first = kubectl("apply", "-n", namespaces[1], "-k", str(samples), check=False)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count(" created") == len(in_files), first.stdout
        second = kubectl("apply", "-n", namespaces[1], "-k", str(samples), check=False)
        assert second.returncode == 0, second.stderr
        assert second.stdout.count(" unchanged") == len(in_files), second.stdout
    finally:
        for namespace in namespaces:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
