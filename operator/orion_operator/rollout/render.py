"""The Deployment and Service an ApiDeployment owns, rendered from its spec as plain dicts.

Pure functions, no Kubernetes calls: the handler applies the result with server-side apply, so
every field written here is a field the operator manages, and nothing else. The pod template is
one function of (spec, image), so a rollback can render, or keep, an older template whole.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from orion_operator.api.apideployment import ApiDeploymentSpec

APP_NAME = "orion-api"
MANAGER = "orion-operator"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CONTAINER_NAME = "api"
HTTP_PORT_NAME = "http"
HEALTH_PORT_NAME = "health"
READINESS_PERIOD_SECONDS = 10
# On the Deployment: which rollout's template it was given, so a gate can tell its own pods.
ROLLOUT_KEY_ANNOTATION = "orion.io/rollout-key"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The ApiDeployment that controls the rendered objects (garbage-collected with it)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(name: str) -> dict[str, str]:
    """Fixed for the object's lifetime: a Deployment's selector cannot change."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: name}


def selector_string(name: str) -> str:
    """The selector in the form /scale reports it (`status.selector`), for HPAs and KEDA."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def object_labels(name: str) -> dict[str, str]:
    return {**selector_labels(name), MANAGED_BY_LABEL: MANAGER}


def _container_ports(spec: ApiDeploymentSpec) -> list[dict[str, Any]]:
    # protocol is a key of the ports list for server-side apply: always spelled out.
    ports = [{"name": HTTP_PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    if spec.health_port != spec.port:
        ports.append(
            {"name": HEALTH_PORT_NAME, "containerPort": spec.health_port, "protocol": "TCP"}
        )
    return ports


def _health_port_name(spec: ApiDeploymentSpec) -> str:
    return HTTP_PORT_NAME if spec.health_port == spec.port else HEALTH_PORT_NAME


def render_pod_template(name: str, spec: ApiDeploymentSpec, image: str) -> Manifest:
    """The Deployment's pod template for `image`; everything else comes from the spec."""
    check = spec.health_check
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "ports": _container_ports(spec),
        "readinessProbe": {
            "httpGet": {"path": check.path, "port": _health_port_name(spec)},
            "periodSeconds": READINESS_PERIOD_SECONDS,
            # Probe timeouts are whole seconds; never shorter than the health check's own.
            "timeoutSeconds": max(1, math.ceil(check.timeout_seconds)),
            "failureThreshold": 3,
        },
    }
    if spec.env:
        container["env"] = [var.model_dump(exclude_none=True) for var in spec.env]
    if spec.env_from:
        container["envFrom"] = [source.model_dump(exclude_none=True) for source in spec.env_from]
    resources = {
        part: dict(values)
        for part, values in (
            ("requests", spec.resources.requests),
            ("limits", spec.resources.limits),
        )
        if values
    }
    if resources:
        container["resources"] = resources
    # Our labels win over podLabels (the schema rejects the selector keys there anyway).
    metadata: dict[str, Any] = {"labels": {**spec.pod_labels, **object_labels(name)}}
    if spec.pod_annotations:
        metadata["annotations"] = dict(spec.pod_annotations)
    return {"metadata": metadata, "spec": {"containers": [container]}}


def rollout_key(spec: ApiDeploymentSpec, template: Manifest) -> str:
    """What a rollout is of: the pod template and the pre-deploy checklist.

    Replicas are not in it, so scaling never starts a rollout; the preDeploy settings are, so
    fixing a failed backup's storage tries the same template again.
    """
    material = {"template": template, "preDeploy": spec.pre_deploy.model_dump(mode="json")}
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def render_deployment(
    name: str,
    namespace: str,
    *,
    owner: Owner,
    replicas: int,
    template: Manifest,
    key: str | None = None,
    progress_deadline_seconds: int | None = None,
) -> Manifest:
    """`key` is the rollout the template belongs to; the Deployment carries it as annotation."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": object_labels(name),
        "ownerReferences": [owner.reference()],
    }
    if key is not None:
        metadata["annotations"] = {ROLLOUT_KEY_ANNOTATION: key}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector_labels(name)},
        "template": template,
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def render_service(name: str, namespace: str, spec: ApiDeploymentSpec, *, owner: Owner) -> Manifest:
    """ClusterIP Service named like the ApiDeployment: the health probe's default address."""
    ports = [
        {"name": HTTP_PORT_NAME, "port": spec.port, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}
    ]
    if spec.health_port != spec.port:
        ports.append(
            {
                "name": HEALTH_PORT_NAME,
                "port": spec.health_port,
                "targetPort": HEALTH_PORT_NAME,
                "protocol": "TCP",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": object_labels(name),
            "ownerReferences": [owner.reference()],
        },
        "spec": {"type": "ClusterIP", "selector": selector_labels(name), "ports": ports},
    }


def template_image(template: Manifest) -> str | None:
    """The API container's image in a pod template (rendered here or read back)."""
    for container in template.get("spec", {}).get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            image = container.get("image")
            return str(image) if image is not None else None
    return None
