"""Status writes shared by several writers of one object, without lost updates.

The ApiDeployment's reconcile and its health daemon both set conditions, and a merge patch
replaces the whole conditions list. So each write is computed from the object it will replace
and carries that object's resourceVersion: if someone wrote in between, the API server answers
409 and the write is computed again from a fresh read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

# The object (metadata, spec, status) → the status keys to merge-patch, or None for nothing.
StatusChange = Callable[[Mapping[str, Any]], dict[str, Any] | None]


def _is_noop(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    return all(status.get(key) == value for key, value in patch.items())


async def update_status(
    client: AsyncClient,
    resource: Any,
    name: str,
    namespace: str,
    change: StatusChange,
    *,
    known: Mapping[str, Any] | None = None,
    attempts: int = 5,
) -> bool:
    """Apply `change` to the status; True when written, False when nothing changed or gone.

    `known` is a recent copy of the object (e.g. kopf's live body) that saves the first read.
    """
    current = known
    for attempt in range(attempts):
        if current is None:
            try:
                current = (await client.get(resource, name, namespace=namespace)).to_dict()
            except ApiError as error:
                if error.status.code == 404:
                    return False
                raise
        patch = change(current)
        if not patch or _is_noop(current.get("status") or {}, patch):
            return False
        version = (current.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "status": patch}
        try:
            await client.patch(
                resource.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
            )
            return True
        except ApiError as error:
            if error.status.code == 404:
                return False
            if error.status.code != 409 or attempt == attempts - 1:
                raise
            current = None
    return False


def merge_diff(current: Any, desired: Any) -> Any:
    """A JSON merge patch value that turns `current` into `desired`.

    Merge patches merge objects key by key, so a key `desired` lacks must be sent as null; lists
    and scalars are replaced whole.
    """
    if not isinstance(current, Mapping) or not isinstance(desired, Mapping):
        return desired
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        if current.get(key) != value:
            patch[key] = merge_diff(current.get(key), value)
    return patch


def with_merge_diffs(
    patch: dict[str, Any], status: Mapping[str, Any], keys: Iterable[str]
) -> dict[str, Any]:
    """`patch` with the values of `keys` turned into merge diffs against `status` (or dropped
    when unchanged), for nested objects that must be replaced, not merged."""
    result = dict(patch)
    for key in keys:
        if key not in result:
            continue
        if status.get(key) == result[key]:
            del result[key]
        else:
            result[key] = merge_diff(status.get(key), result[key])
    return result
