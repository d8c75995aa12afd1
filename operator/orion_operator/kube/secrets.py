"""Reading one key of a Secret, with errors that name the object and field that pointed at it."""

from __future__ import annotations

import base64

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret

from orion_operator.api.common import SecretKeyRef


class SecretUnavailable(Exception):
    """The Secret or its key is missing or unreadable; `reason` goes into a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def read_secret_key(
    client: AsyncClient, namespace: str, ref: SecretKeyRef, *, referrer: str, field: str
) -> str:
    """The decoded value of `ref` in `namespace`; `referrer`/`field` name who asked, for errors."""
    where = f"({referrer}, {field})"
    try:
        secret = await client.get(Secret, name=ref.name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            raise SecretUnavailable(
                "SecretNotFound",
                f'Secret "{ref.name}" not found in namespace "{namespace}" {where}',
            ) from None
        if error.status.code == 403:
            raise SecretUnavailable(
                "SecretForbidden",
                f'the operator may not read Secret "{ref.name}" in namespace "{namespace}" {where}',
            ) from None
        raise
    encoded = (secret.data or {}).get(ref.key)
    if encoded is None:
        raise SecretUnavailable(
            "SecretKeyNotFound", f'Secret "{ref.name}" has no key "{ref.key}" {where}'
        )
    try:
        return base64.b64decode(encoded).decode()
    except (ValueError, UnicodeDecodeError):
        raise SecretUnavailable(
            "SecretKeyInvalid", f'Secret "{ref.name}" key "{ref.key}" is not UTF-8 text {where}'
        ) from None
