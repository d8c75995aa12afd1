"""The owned Deployment and Service, rendered from the spec without a cluster."""

from __future__ import annotations

from typing import Any

from orion_operator.api.apideployment import ApiDeploymentSpec
from orion_operator.handlers.apideployment import probe_url
from orion_operator.rollout.render import (
    Owner,
    render_deployment,
    render_pod_template,
    render_service,
    rollout_key,
    selector_string,
    template_image,
)

OWNER = Owner("orion.io/v1alpha1", "ApiDeployment", "orion-api", "uid-1")


def _spec(**fields: Any) -> ApiDeploymentSpec:
    return ApiDeploymentSpec.model_validate({"image": "ghcr.io/example/orion-api:1.0.0", **fields})


def _container(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = template["spec"]["containers"]
    return container


def test_deployment_is_owned_labelled_and_selects_by_instance() -> None:
    spec = _spec()
    template = render_pod_template("orion-api", spec, spec.image)
    deployment = render_deployment("orion-api", "shop", owner=OWNER, replicas=3, template=template)

    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["name"] == "orion-api"
    assert deployment["metadata"]["namespace"] == "shop"
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/name": "orion-api",
        "app.kubernetes.io/instance": "orion-api",
        "app.kubernetes.io/managed-by": "orion-operator",
    }
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "orion.io/v1alpha1",
            "kind": "ApiDeployment",
            "name": "orion-api",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert deployment["spec"]["replicas"] == 3
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "orion-api",
        "app.kubernetes.io/instance": "orion-api",
    }
    # Every selector label is on the pods, whatever podLabels says.
    assert selector.items() <= template["metadata"]["labels"].items()
    assert selector_string("orion-api") == (
        "app.kubernetes.io/instance=orion-api,app.kubernetes.io/name=orion-api"
    )


def test_selector_does_not_depend_on_the_spec() -> None:
    """A Deployment's selector is immutable: image, labels or ports must not move it."""
    first = render_deployment(
        "api", "ns", owner=OWNER, replicas=1, template=render_pod_template("api", _spec(), "a:1")
    )
    other_spec = _spec(port=8080, podLabels={"team": "payments"})
    second = render_deployment(
        "api", "ns", owner=OWNER, replicas=9, template=render_pod_template("api", other_spec, "b:2")
    )
    assert first["spec"]["selector"] == second["spec"]["selector"]


def test_pod_template_carries_image_port_env_resources_and_readiness_on_health() -> None:
    spec = _spec(
        port=8080,
        env=[
            {"name": "NODE_ENV", "value": "production"},
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "log"}}},
        ],
        envFrom=[{"secretRef": {"name": "api-secrets"}}, {"configMapRef": {"name": "api-config"}}],
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        podLabels={"team": "payments"},
        podAnnotations={"prometheus.io/scrape": "true"},
        healthCheck={"path": "/healthz", "timeoutSeconds": 2.5},
    )
    template = render_pod_template("orion-api", spec, "ghcr.io/example/orion-api:2.0.0")
    container = _container(template)

    assert container["name"] == "api"
    assert container["image"] == "ghcr.io/example/orion-api:2.0.0"
    assert template_image(template) == "ghcr.io/example/orion-api:2.0.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["env"] == [
        {"name": "NODE_ENV", "value": "production"},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "log"}}},
    ]
    assert container["envFrom"] == [
        {"secretRef": {"name": "api-secrets"}},
        {"configMapRef": {"name": "api-config"}},
    ]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["timeoutSeconds"] == 3
    assert template["metadata"]["labels"]["team"] == "payments"
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_resource_quantities_written_as_numbers_become_strings() -> None:
    spec = _spec(resources={"requests": {"cpu": 1}})
    assert _container(render_pod_template("api", spec, spec.image))["resources"] == {
        "requests": {"cpu": "1"}
    }


def test_minimal_spec_renders_no_empty_sections() -> None:
    spec = _spec()
    template = render_pod_template("api", spec, spec.image)
    container = _container(template)
    assert "env" not in container and "envFrom" not in container and "resources" not in container
    assert "annotations" not in template["metadata"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]


def test_only_the_image_argument_differs_between_two_templates() -> None:
    """A rollback renders the old template from the same spec and the old image."""
    spec = _spec()
    new = render_pod_template("api", spec, "api:2")
    old = render_pod_template("api", spec, "api:1")
    _container(old)["image"] = "api:2"
    assert old == new


def test_service_is_cluster_ip_on_the_port_and_selects_the_pods() -> None:
    spec = _spec(port=8080)
    service = render_service("orion-api", "shop", spec, owner=OWNER)
    assert service["apiVersion"] == "v1" and service["kind"] == "Service"
    assert service["metadata"]["name"] == "orion-api"
    assert service["metadata"]["ownerReferences"][0]["controller"] is True
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "orion-api",
        "app.kubernetes.io/instance": "orion-api",
    }
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_health_port_follows_the_port_unless_set() -> None:
    spec = _spec(port=8080)
    assert probe_url(spec, "orion-api", "shop") == "http://orion-api.shop.svc:8080/health"


def test_health_on_its_own_port_is_exposed_and_probed_there() -> None:
    spec = _spec(port=8080, healthCheck={"port": 9090, "path": "/health"})
    container = _container(render_pod_template("api", spec, spec.image))
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "health", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "health"}
    ports = render_service("api", "ns", spec, owner=OWNER)["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("http", 8080), ("health", 9090)]
    assert probe_url(spec, "api", "ns") == "http://api.ns.svc:9090/health"


def test_health_check_url_overrides_the_service() -> None:
    spec = _spec(healthCheck={"url": "http://127.0.0.1:3000/health"})
    assert probe_url(spec, "orion-api", "shop") == "http://127.0.0.1:3000/health"


def test_old_objects_with_the_former_health_port_default_keep_probing_the_same_port() -> None:
    # Before spec.port existed, healthCheck.port defaulted to 3000, and so does spec.port.
    spec = _spec(healthCheck={"port": 3000})
    container = _container(render_pod_template("api", spec, spec.image))
    assert len(container["ports"]) == 1
    assert probe_url(spec, "api", "ns") == "http://api.ns.svc:3000/health"


def test_the_rollout_key_follows_the_template_and_pre_deploy_not_the_replicas() -> None:
    def key(**fields: Any) -> str:
        spec = _spec(**fields)
        return rollout_key(spec, render_pod_template("orion-api", spec, spec.image))

    base = key()
    assert key(replicas=7, minReplicas=2, maxReplicas=9) == base
    assert key(healthCheck={"intervalSeconds": 5}, rollout={"verifySeconds": 5}) == base
    assert key(image="ghcr.io/example/orion-api:2.0.0") != base
    assert key(podAnnotations={"retry": "1"}) != base
    assert key(preDeploy={"requireBackupWithin": "1h"}) != base


def test_the_deployment_carries_its_rollout_key_and_progress_deadline() -> None:
    spec = _spec()
    template = render_pod_template("orion-api", spec, spec.image)
    deployment = render_deployment(
        "orion-api",
        "shop",
        owner=OWNER,
        replicas=2,
        template=template,
        key="abc",
        progress_deadline_seconds=90,
    )
    assert deployment["metadata"]["annotations"] == {"orion.io/rollout-key": "abc"}
    assert deployment["spec"]["progressDeadlineSeconds"] == 90
