"""The ApiDeployment's Deployment and Service, hand edits, scaling and bad input, end to end.

A real kube-apiserver and kube-controller-manager (ReplicaSets, the HPA controller, garbage
collection), kwok making the pods Ready, the operator as a process, a real PostgreSQL for
connection use, and a local /health server standing in for the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orion_operator.devenv.kubectl import kubectl
from orion_operator.devenv.postgres import free_port
from tests.conftest import AppDatabase
from tests.health_server import ScriptedHealthServer
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    wait_for,
)

IMAGE = "ghcr.io/example/orion-api:1.0.0"
SELECTOR = {"app.kubernetes.io/name": "orion-api", "app.kubernetes.io/instance": "orion-api"}


def api_deployment(url: str, name: str = "orion-api", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "ApiDeployment",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "healthCheck": {"url": url, "intervalSeconds": 1, "timeoutSeconds": 1},
            "dependencies": {"queues": []},
            **spec,
        },
    }


@pytest.fixture
def health() -> Iterator[ScriptedHealthServer]:
    server = ScriptedHealthServer()
    with server.running():
        yield server


def found(*args: str) -> dict[str, Any] | None:
    done = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def apid(namespace: str, name: str = "orion-api") -> dict[str, Any]:
    return get_json("apid", name, "-n", namespace)


def deployment_replicas(namespace: str, name: str = "orion-api") -> int | None:
    deployment = found("deployment", name, "-n", namespace)
    return None if deployment is None else deployment["spec"]["replicas"]


def events(namespace: str, reason: str) -> list[dict[str, Any]]:
    items = get_json("events", "-n", namespace)["items"]
    return [
        e for e in items if e["reason"] == reason and e["involvedObject"]["kind"] == "ApiDeployment"
    ]


def is_ready(namespace: str, name: str = "orion-api") -> bool:
    ready = condition(apid(namespace, name))
    return ready is not None and ready["status"] == "True"


def scale(namespace: str, replicas: int, name: str = "orion-api") -> None:
    kubectl("scale", f"apideployment/{name}", "-n", namespace, f"--replicas={replicas}")


def test_owned_deployment_and_service_come_up_ready_and_show_in_kubectl_get(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    health: ScriptedHealthServer,
) -> None:
    apply(database_secret(app_database.url), namespace)
    applied = apply(
        api_deployment(
            health.url,
            replicas=3,
            port=8080,
            env=[
                {"name": "NODE_ENV", "value": "production"},
                {
                    "name": "DATABASE_URL",
                    "valueFrom": {
                        "secretKeyRef": {"name": "orion-database", "key": "DATABASE_URL"}
                    },
                },
            ],
            resources={"requests": {"cpu": "100m", "memory": "128Mi"}},
        ),
        namespace,
    )
    assert applied.returncode == 0, applied.stderr

    wait_for(lambda: is_ready(namespace), timeout=90, what="the ApiDeployment to be Ready")
    owner = apid(namespace)
    deployment = get_json("deployment", "orion-api", "-n", namespace)
    service = get_json("service", "orion-api", "-n", namespace)

    for obj in (deployment, service):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "ApiDeployment",
                "name": "orion-api",
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["labels"] == {
            **SELECTOR,
            "app.kubernetes.io/managed-by": "orion-operator",
        }
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/health",
        "port": "http",
        "scheme": "HTTP",
    }
    assert {"name": "NODE_ENV", "value": "production"} in container["env"]
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == SELECTOR
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]

    status = owner["status"]
    assert status["readyReplicas"] == 3
    assert status["replicas"] == 3
    assert status["currentImage"] == IMAGE
    assert status["observedGeneration"] == owner["metadata"]["generation"]
    assert status["phase"] == "Healthy"
    assert status["selector"] == (
        "app.kubernetes.io/instance=orion-api,app.kubernetes.io/name=orion-api"
    )
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Available": "True",
        "BackupRecent": "True",
        "ConfigurationPresent": "True",
        "ConnectionCapacity": "True",
        "Healthy": "True",
        "MigrationsApplied": "True",
        "Progressing": "False",
        "Ready": "True",
        "ReplicasClamped": "False",
        "RolledBack": "False",
        "Verified": "True",
    }
    # The first revision: rolled out, and the known-good one from now on.
    assert status["stableImage"] == IMAGE
    assert status["rollout"]["result"] == "Succeeded"
    # Connection use comes from the real server.
    (max_connections,) = app_database.query("SELECT current_setting('max_connections')::int")[0]
    assert status["databaseConnections"]["maxConnections"] == max_connections
    assert status["databaseConnections"]["inUse"] >= 0

    # The pods are selected by what /scale reports, as an HPA would select them.
    pods = get_json("pods", "-n", namespace, "-l", status["selector"])["items"]
    assert len(pods) == 3

    table = kubectl("get", "apideployments", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "READY", "DESIRED", "HEALTH", "PHASE", "AGE"]
    assert table[1].split()[:6] == ["orion-api", IMAGE, "3", "3", "ok", "Healthy"]

    # Deleting the ApiDeployment takes its Deployment and Service with it.
    kubectl("delete", "apid", "orion-api", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: (
            found("deployment", "orion-api", "-n", namespace) is None
            and found("service", "orion-api", "-n", namespace) is None
        ),
        timeout=60,
        what="garbage collection of the Deployment and Service",
    )


def test_hand_edits_of_managed_fields_are_put_back_and_other_fields_stay(
    operator: OperatorProcess, namespace: str, health: ScriptedHealthServer
) -> None:
    assert apply(api_deployment(health.url), namespace).returncode == 0
    wait_for(lambda: is_ready(namespace), timeout=90, what="the ApiDeployment to be Ready")

    # Not ours: an annotation and a label added by hand.
    kubectl("annotate", "deployment/orion-api", "-n", namespace, "team=payments")
    kubectl("label", "service/orion-api", "-n", namespace, "cost-center=42")
    # Ours: the image, the container port, the replicas and the Service's port.
    kubectl("set", "image", "deployment/orion-api", "-n", namespace, "api=evil/orion-api:6.6.6")
    port_patch = [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/ports/0/containerPort",
            "value": 9999,
        }
    ]
    kubectl(
        "patch",
        "deployment/orion-api",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(port_patch),
    )
    kubectl("scale", "deployment/orion-api", "-n", namespace, "--replicas=7")
    kubectl(
        "patch",
        "service/orion-api",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}]),
    )

    def put_back() -> bool:
        deployment = get_json("deployment", "orion-api", "-n", namespace)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        service = get_json("service", "orion-api", "-n", namespace)
        return (
            container["image"] == IMAGE
            and container["ports"][0]["containerPort"] == 3000
            and deployment["spec"]["replicas"] == 2
            and service["spec"]["ports"][0]["port"] == 3000
        )

    wait_for(put_back, timeout=30, what="the hand edits to be put back")
    deployment = get_json("deployment", "orion-api", "-n", namespace)
    service = get_json("service", "orion-api", "-n", namespace)
    assert deployment["metadata"]["annotations"]["team"] == "payments"
    assert service["metadata"]["labels"]["cost-center"] == "42"
    drift = events(namespace, "DriftCorrected")
    assert any("kubectl-set" in e["message"] and "image" in e["message"] for e in drift)
    wait_for(lambda: is_ready(namespace), timeout=60, what="Ready again after the revert")


def test_kubectl_scale_follows_the_bounds_in_any_phase(
    operator: OperatorProcess, namespace: str, health: ScriptedHealthServer
) -> None:
    assert (
        apply(api_deployment(health.url, minReplicas=2, maxReplicas=4), namespace).returncode == 0
    )
    wait_for(lambda: is_ready(namespace), timeout=90, what="the ApiDeployment to be Ready")

    scale(namespace, 3)
    wait_for(lambda: deployment_replicas(namespace) == 3, timeout=30, what="3 replicas")
    wait_for(lambda: apid(namespace)["status"].get("readyReplicas") == 3, what="3 ready")

    # Beyond maxReplicas: the request is kept in spec, the Deployment gets the maximum.
    scale(namespace, 9)
    wait_for(lambda: events(namespace, "ReplicasClamped"), timeout=30, what="ReplicasClamped")
    assert deployment_replicas(namespace) == 4
    obj = apid(namespace)
    assert obj["spec"]["replicas"] == 9
    assert obj["status"]["targetReplicas"] == 4
    clamped = condition(obj, "ReplicasClamped")
    assert clamped is not None and clamped["status"] == "True"
    assert clamped["reason"] == "AboveMaxReplicas"
    assert events(namespace, "ReplicasClamped")[0]["message"] == (
        "spec.replicas 9 is above spec.maxReplicas 4: the Deployment runs 4"
    )
    scale_subresource = json.loads(
        kubectl(
            "get",
            "--raw",
            f"/apis/orion.io/v1alpha1/namespaces/{namespace}/apideployments/orion-api/scale",
        ).stdout
    )
    assert scale_subresource["spec"]["replicas"] == 9
    wait_for(lambda: apid(namespace)["status"].get("replicas") == 4, what="status.replicas at 4")

    # Below minReplicas: raised to it.
    scale(namespace, 0)
    wait_for(lambda: deployment_replicas(namespace) == 2, timeout=30, what="2 replicas")
    assert condition(apid(namespace), "ReplicasClamped")["reason"] == "BelowMinReplicas"

    # The API is down: scaling still follows.
    health.mode = "500"
    wait_for(lambda: apid(namespace)["status"].get("phase") == "Down", what="phase Down")
    scale(namespace, 3)
    wait_for(lambda: deployment_replicas(namespace) == 3, timeout=30, what="3 replicas while Down")
    assert condition(apid(namespace), "ReplicasClamped")["status"] == "False"


def test_hpa_targeting_the_apideployment_drives_its_replicas_within_the_clamps(
    operator: OperatorProcess, namespace: str, health: ScriptedHealthServer
) -> None:
    assert apply(api_deployment(health.url, replicas=2, maxReplicas=5), namespace).returncode == 0
    wait_for(lambda: deployment_replicas(namespace) == 2, timeout=60, what="2 replicas")

    def hpa(min_replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "orion-api"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "orion.io/v1alpha1",
                    "kind": "ApiDeployment",
                    "name": "orion-api",
                },
                "minReplicas": min_replicas,
                "maxReplicas": 8,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }

    # This control plane has no metrics API, so the HPA cannot scale on CPU here; what it can
    # do without metrics is raise a target that is below its minReplicas. That exercises the
    # whole path: the HPA reads /scale, writes spec.replicas through it, the operator follows.
    applied = apply(hpa(3), namespace)
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: deployment_replicas(namespace) == 3, timeout=90, what="the HPA's 3 replicas")
    assert apid(namespace)["spec"]["replicas"] == 3

    def hpa_condition(type: str) -> dict[str, Any] | None:
        obj = found("hpa", "orion-api", "-n", namespace) or {}
        return next(
            (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type), None
        )

    able = wait_for(lambda: hpa_condition("AbleToScale"), timeout=60, what="AbleToScale")
    assert able["status"] == "True", able
    assert able["reason"] in ("SucceededRescale", "SucceededGetScale", "ReadyForNewScale")

    # An HPA whose minimum is above the ApiDeployment's maxReplicas is clamped, with an Event.
    assert apply(hpa(7), namespace).returncode == 0
    wait_for(lambda: apid(namespace)["spec"]["replicas"] == 7, timeout=90, what="the HPA's 7")
    wait_for(lambda: events(namespace, "ReplicasClamped"), timeout=30, what="ReplicasClamped")
    assert deployment_replicas(namespace) == 5
    # Within its own range now, the HPA goes on to metrics: it parsed the pods' selector from
    # status.selector (without one it would say InvalidSelector) and stops only where this
    # control plane has no metrics API. CPU-driven scaling itself cannot run here.
    active = wait_for(lambda: hpa_condition("ScalingActive"), timeout=60, what="ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric"), active


def test_scale_up_past_the_connection_share_warns_first_and_still_scales(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    health: ScriptedHealthServer,
) -> None:
    apply(database_secret(app_database.url), namespace)
    spec = {"replicas": 1, "databaseConnections": {"perReplica": 1000, "maxShare": 0.8}}
    assert apply(api_deployment(health.url, **spec), namespace).returncode == 0
    wait_for(lambda: deployment_replicas(namespace) == 1, timeout=60, what="1 replica")

    scale(namespace, 2)

    def warning(replicas: str) -> dict[str, Any] | None:
        return next(
            (
                e
                for e in events(namespace, "ConnectionsNearLimit")
                if f"scaling from {replicas} replicas would use about" in e["message"]
            ),
            None,
        )

    warned = wait_for(lambda: warning("1 to 2"), timeout=30, what="the scale-up warning")
    assert warned["type"] == "Warning"
    assert "above the limit of" in warned["message"]
    # Creating the Deployment was a scale-up from nothing, and it was warned about too.
    assert warning("0 to 1") is not None
    wait_for(lambda: deployment_replicas(namespace) == 2, timeout=30, what="2 replicas anyway")
    # False while the scale-up is weighed, and after it too: 2 pools of 1000 pass the share.
    capacity = wait_for(
        lambda: (
            (c := condition(apid(namespace), "ConnectionCapacity")) and c["status"] == "False" and c
        ),
        what="ConnectionCapacity False",
    )
    assert capacity["reason"] in ("AboveMaxShare", "ReplicasAboveMaxShare")


def test_unreachable_database_is_reported_without_holding_back_the_deployment(
    operator: OperatorProcess, namespace: str, health: ScriptedHealthServer
) -> None:
    url = f"postgresql://orion:pw-not-shown@127.0.0.1:{free_port()}/orion"
    apply(database_secret(url), namespace)
    assert apply(api_deployment(health.url), namespace).returncode == 0
    wait_for(lambda: is_ready(namespace), timeout=90, what="Ready without the database")
    capacity = condition(apid(namespace), "ConnectionCapacity")
    assert capacity is not None
    assert (capacity["status"], capacity["reason"]) == ("Unknown", "DatabaseUnreachable")
    assert "pw-not-shown" not in json.dumps(apid(namespace))


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        ({"minReplicas": 5, "maxReplicas": 3}, "spec.minReplicas", "greater than spec.maxReplicas"),
        ({"image": ""}, "spec.image", "at least 1 chars long"),
        ({"replicas": -1}, "spec.replicas", "greater than or equal to 0"),
        (
            {"replicas": 12, "maxReplicas": 10},
            "spec.replicas",
            "is outside [spec.minReplicas, spec.maxReplicas] = [1, 10]",
        ),
        (
            {"replicas": 1, "minReplicas": 2},
            "spec.replicas",
            "is outside [spec.minReplicas, spec.maxReplicas] = [2, 10]",
        ),
        ({"minReplicas": -2}, "spec.minReplicas", "greater than or equal to 0"),
        ({"port": -80}, "spec.port", "greater than or equal to 1"),
        (
            {"rollout": {"progressDeadlineSeconds": -30}},
            "spec.rollout.progressDeadlineSeconds",
            "greater than or equal to 1",
        ),
        (
            {"databaseConnections": {"perReplica": -5}},
            "spec.databaseConnections.perReplica",
            "greater than or equal to 0",
        ),
    ],
)
def test_bad_input_is_rejected_by_kubectl_apply_naming_the_field(
    cluster: str, namespace: str, spec: dict[str, Any], field: str, says: str
) -> None:
    manifest = api_deployment("http://127.0.0.1:1/health", **spec)
    rejected = apply(manifest, namespace)
    assert rejected.returncode != 0
    assert field in rejected.stderr and says in rejected.stderr, rejected.stderr


def test_replicas_written_outside_the_bounds_are_refused_but_scale_writes_are_clamped(
    cluster: str, namespace: str
) -> None:
    manifest = api_deployment("http://127.0.0.1:1/health", replicas=3, maxReplicas=5)
    assert apply(manifest, namespace).returncode == 0

    # kubectl scale, an HPA or KEDA write through /scale: beyond the bounds is accepted (and the
    # operator clamps the Deployment, see the scaling tests).
    scale(namespace, 9)
    assert apid(namespace)["spec"]["replicas"] == 9

    def patch(spec: dict[str, Any]) -> Any:
        return kubectl(
            "patch", "apid", "orion-api", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": spec}), check=False,
        )  # fmt: skip

    # A write to another field leaves the scaled replicas alone and is accepted, like a GitOps
    # apply whose manifest does not set replicas; so is lowering the bound below them.
    assert patch({"maxReplicas": 4}).returncode == 0
    # Writing replicas itself outside the bounds is refused, naming the field.
    refused = patch({"replicas": 8})
    assert refused.returncode != 0
    assert "spec.replicas: 8 is outside [spec.minReplicas, spec.maxReplicas] = [1, 4]" in (
        refused.stderr
    ), refused.stderr
    assert apid(namespace)["spec"]["replicas"] == 9
    assert patch({"replicas": 4}).returncode == 0


def test_an_apideployment_without_image_is_rejected(cluster: str, namespace: str) -> None:
    manifest = api_deployment("http://127.0.0.1:1/health")
    del manifest["spec"]["image"]
    rejected = apply(manifest, namespace)
    assert rejected.returncode != 0
    assert "spec.image: Required value" in rejected.stderr


def test_a_name_that_cannot_name_a_service_is_rejected(cluster: str, namespace: str) -> None:
    rejected = apply(api_deployment("http://127.0.0.1:1/health", name="api.v2"), namespace)
    assert rejected.returncode != 0
    assert "becomes its Service's name" in rejected.stderr, rejected.stderr
