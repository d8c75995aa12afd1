"""Items added by hand to the lists the operator renders whole are found and put back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orion_operator.api.apideployment import ApiDeploymentSpec
from orion_operator.rollout.drift import foreign_items
from orion_operator.rollout.render import (
    Owner,
    render_deployment,
    render_pod_template,
    render_service,
)


class PatchTestFailed(Exception):
    pass


def apply_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON patch operations the operator sends (RFC 6902 test, replace, remove, add)."""
    result = copy.deepcopy(document)
    for operation in operations:
        *parents, last = operation["path"].strip("/").split("/")
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        if op == "add" and last == "-":
            node.append(operation["value"])
            continue
        key: Any = int(last) if isinstance(node, list) else last
        if op == "test" and node[key] != operation["value"]:
            raise PatchTestFailed(operation["path"])
        if op == "replace":
            node[key] = operation["value"]
        elif op == "remove":
            del node[key]
    return result


OWNER = Owner("orion.io/v1alpha1", "ApiDeployment", "api", "uid-1")
SPEC = ApiDeploymentSpec.model_validate({"image": "api:1", "port": 3000})


def _deployment() -> dict[str, Any]:
    template = render_pod_template("api", SPEC, SPEC.image)
    deployment = render_deployment("api", "ns", owner=OWNER, replicas=2, template=template)
    deployment["metadata"]["resourceVersion"] = "42"
    return deployment


def _service() -> dict[str, Any]:
    service = render_service("api", "ns", SPEC, owner=OWNER)
    service["metadata"]["resourceVersion"] = "42"
    return service


def test_nothing_to_do_when_live_matches() -> None:
    for desired in (_deployment(), _service()):
        assert foreign_items(copy.deepcopy(desired), desired).operations == []


def test_a_container_port_edited_by_hand_is_put_back_in_one_step() -> None:
    desired = _deployment()
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 9999
    found = foreign_items(live, desired)
    assert found.described == ["port 9999/TCP"]
    patched = apply_patch(live, found.operations)
    assert patched["spec"]["template"] == desired["spec"]["template"]


def test_a_container_added_by_hand_is_removed() -> None:
    desired = _deployment()
    live = copy.deepcopy(desired)
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.insert(0, {"name": "debug", "image": "busybox"})
    containers[1]["ports"].append({"containerPort": 8443, "protocol": "TCP"})
    found = foreign_items(live, desired)
    assert found.described == ["port 8443/TCP", 'container "debug"']
    assert apply_patch(live, found.operations)["spec"]["template"] == desired["spec"]["template"]


def test_a_container_renamed_by_hand_is_replaced_by_ours_without_an_empty_template() -> None:
    desired = _deployment()
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["name"] = "renamed"
    found = foreign_items(live, desired)
    assert found.described == ['container "renamed"']
    assert apply_patch(live, found.operations)["spec"]["template"] == desired["spec"]["template"]


def test_the_patch_applies_only_to_the_version_it_was_computed_from() -> None:
    desired = _deployment()
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"].append({"name": "debug", "image": "x"})
    operations = foreign_items(live, desired).operations
    live["metadata"]["resourceVersion"] = "43"
    with pytest.raises(PatchTestFailed):
        apply_patch(live, operations)


def test_a_service_port_edited_by_hand_is_put_back_without_leaving_no_port() -> None:
    desired = _service()
    live = copy.deepcopy(desired)
    live["spec"]["ports"][0]["port"] = 9999
    found = foreign_items(live, desired)
    assert found.described == ["port 9999/TCP"]
    assert apply_patch(live, found.operations)["spec"]["ports"] == desired["spec"]["ports"]
