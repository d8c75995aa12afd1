"""Reading one key of a Secret, with errors that name the object and field that pointed at it."""

from __future__ import annotations

import base64
import time

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


class SecretCache:
    """Keys read in the last `ttl_seconds`: a burst of reconciles reads a shared Secret once.

    Only values are kept, never errors, so a Secret created after a failed read is seen at once;
    a changed value is seen within `ttl_seconds`.
    """

    def __init__(self, ttl_seconds: float = 5.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._values: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def read_key(
        self, client: AsyncClient, namespace: str, ref: SecretKeyRef, *, referrer: str, field: str
    ) -> str:
        key = (namespace, ref.name, ref.key)
        now = time.monotonic()
        cached = self._values.get(key)
        if cached is not None and now - cached[1] < self.ttl_seconds:
            return cached[0]
        value = await read_secret_key(client, namespace, ref, referrer=referrer, field=field)
        # Drop what has expired, so Secrets no longer referenced do not stay in memory.
        self._values = {k: v for k, v in self._values.items() if now - v[1] < self.ttl_seconds}
        self._values[key] = (value, now)
        return value
