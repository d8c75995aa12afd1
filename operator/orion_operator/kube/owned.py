"""Objects the operator owns, written with server-side apply under one field manager.

The applied manifest holds only the fields the operator manages, so it owns exactly those:
fields others set (an annotation added by hand, the Deployment controller's revision, defaults
the API server fills in) stay theirs and are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

FIELD_MANAGER = "orion-operator"


@dataclass(frozen=True)
class Applied:
    """The object as the API server stored it; `conflict` names fields someone else had changed."""

    obj: dict[str, Any]
    conflict: str | None = None


async def apply_owned(
    client: AsyncClient, manifest: dict[str, Any], *, remove_first: Sequence[dict[str, Any]] = ()
) -> Applied:
    """Apply `manifest`; a field another manager changed (a hand edit) is taken back.

    `remove_first` is a JSON patch applied before, for list items apply would leave in place.
    The first apply is not forced, so a conflict tells us someone changed a field we manage and
    whom; the second one forces, which only touches the fields in our manifest.
    """
    obj = codecs.from_dict(manifest)
    resource: Any = type(obj)
    metadata = manifest["metadata"]
    if remove_first:
        try:
            await client.patch(
                resource,
                metadata["name"],
                list(remove_first),
                namespace=metadata.get("namespace"),
                patch_type=PatchType.JSON,
            )
        except ApiError as error:
            # A failed test: the object changed since it was read; its watch event comes next.
            if error.status.code not in (409, 422):
                raise
    try:
        applied = await client.apply(obj, field_manager=FIELD_MANAGER)
        return Applied(applied.to_dict())
    except ApiError as error:
        if error.status.code != 409:
            raise
        conflict = error.status.message or "conflicting field managers"
    applied = await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
    return Applied(applied.to_dict(), conflict)


async def get_or_none(client: AsyncClient, resource: Any, name: str, namespace: str) -> Any | None:
    try:
        return await client.get(resource, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
