"""List items others added where the operator's rendering is the whole list.

Server-side apply merges keyed lists item by item, so an item another manager added stays. For
most lists that is right (an env variable or a label added by hand is theirs). Not for the
Deployment's containers, the API container's ports and the Service's ports: a container
renamed by hand would run beside ours, and a port whose number was edited by hand stays as a
second item that collides with ours by name, so the apply itself would be rejected. Those lists
are put back by one JSON patch first, guarded by the resourceVersion they were read at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orion_operator.rollout.render import Manifest


@dataclass(frozen=True)
class ForeignItems:
    """A JSON patch that puts the lists back (empty when nothing is foreign), and what it does."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    described: list[str] = field(default_factory=list)


def _port_keys(ports: Sequence[Mapping[str, Any]], number_field: str) -> list[str]:
    return [f"{p.get(number_field)}/{p.get('protocol') or 'TCP'}" for p in ports]


def _foreign_ports(
    path: str, live: list[Mapping[str, Any]], desired: list[dict[str, Any]], number_field: str
) -> tuple[list[dict[str, Any]], list[str]]:
    wanted = set(_port_keys(desired, number_field))
    extra = [key for key in _port_keys(live, number_field) if key not in wanted]
    if not extra:
        return [], []
    # Replaced whole: removing first could leave a Service without ports, which is invalid.
    return [{"op": "replace", "path": path, "value": desired}], [f"port {key}" for key in extra]


def foreign_items(live: Manifest, desired: Manifest) -> ForeignItems:
    """A patch for `live` after which applying `desired` leaves exactly its lists."""
    operations: list[dict[str, Any]] = []
    described: list[str] = []
    if desired["kind"] == "Service":
        operations, described = _foreign_ports(
            "/spec/ports",
            (live.get("spec") or {}).get("ports") or [],
            desired["spec"]["ports"],
            "port",
        )
    elif desired["kind"] == "Deployment":
        path = "/spec/template/spec/containers"
        pod = ((live.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers: list[Mapping[str, Any]] = pod.get("containers") or []
        wanted = {c["name"]: c for c in desired["spec"]["template"]["spec"]["containers"]}
        # Ports first, at the containers' current indexes; removals below shift them.
        for index, container in enumerate(containers):
            ours = wanted.get(str(container.get("name")))
            if ours is not None:
                ops, found = _foreign_ports(
                    f"{path}/{index}/ports",
                    container.get("ports") or [],
                    ours.get("ports") or [],
                    "containerPort",
                )
                operations += ops
                described += found
        for index in reversed(range(len(containers))):
            name = str(containers[index].get("name"))
            if name not in wanted:
                operations.append({"op": "remove", "path": f"{path}/{index}"})
                described.append(f'container "{name}"')
        # In the same patch, so the template never has no container at all.
        present = {str(c.get("name")) for c in containers}
        for name, container in wanted.items():
            if name not in present and operations:
                operations.append({"op": "add", "path": f"{path}/-", "value": container})
    if not operations:
        return ForeignItems()
    version = (live.get("metadata") or {}).get("resourceVersion")
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": version}
    return ForeignItems([guard, *operations], described)
