"""The configuration a pod template needs: every Secret, ConfigMap and key the spec names.

The first gate of a rollout (the runbook's "variables de entorno actualizadas"): a missing one
would leave new pods failing to start, so the rollout stops before any pod restarts and says
which one, and where the spec names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orion_operator.api.apideployment import ApiDeploymentSpec

ConfigKind = Literal["Secret", "ConfigMap"]


@dataclass(frozen=True)
class ConfigReference:
    """A Secret or ConfigMap (and, for a key reference, the key) the pods read."""

    kind: ConfigKind
    name: str
    key: str | None  # None: the whole object (envFrom)
    field: str  # where the spec names it, for the message


@dataclass(frozen=True)
class FoundObject:
    """What the handler read: the keys present, or why the object could not be read."""

    keys: frozenset[str] = frozenset()
    missing: bool = False
    forbidden: bool = False


def config_references(spec: ApiDeploymentSpec) -> list[ConfigReference]:
    """Every reference of env and envFrom, in spec order."""
    found: list[ConfigReference] = []
    for var in spec.env:
        source = var.value_from
        if source is None:
            continue
        where = f"spec.env[{var.name}].valueFrom"
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            found.append(ConfigReference("Secret", ref.name, ref.key, f"{where}.secretKeyRef"))
        if source.config_map_key_ref is not None:
            cm = source.config_map_key_ref
            found.append(ConfigReference("ConfigMap", cm.name, cm.key, f"{where}.configMapKeyRef"))
    for index, env_from in enumerate(spec.env_from):
        where = f"spec.envFrom[{index}]"
        if env_from.secret_ref is not None:
            found.append(
                ConfigReference("Secret", env_from.secret_ref.name, None, f"{where}.secretRef")
            )
        if env_from.config_map_ref is not None:
            found.append(
                ConfigReference(
                    "ConfigMap", env_from.config_map_ref.name, None, f"{where}.configMapRef"
                )
            )
    return found


def missing_configuration(
    references: list[ConfigReference],
    objects: Mapping[tuple[ConfigKind, str], FoundObject],
    namespace: str,
) -> list[str]:
    """One sentence per reference that cannot be satisfied, naming the object and the field."""
    problems = []
    for ref in references:
        found = objects.get((ref.kind, ref.name), FoundObject(missing=True))
        if found.forbidden:
            problems.append(
                f'the operator may not read {ref.kind} "{ref.name}" in namespace '
                f'"{namespace}" ({ref.field})'
            )
        elif found.missing:
            problems.append(f'{ref.kind} "{ref.name}" not found ({ref.field})')
        elif ref.key is not None and ref.key not in found.keys:
            problems.append(f'{ref.kind} "{ref.name}" has no key "{ref.key}" ({ref.field})')
    return list(dict.fromkeys(problems))
