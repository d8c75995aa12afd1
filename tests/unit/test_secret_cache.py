"""The Secret cache Tenant reconciles share: one read per Secret per few seconds."""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from orion_operator.api.common import SecretKeyRef
from orion_operator.kube.secrets import SecretCache, SecretUnavailable

REF = SecretKeyRef(name="orion-database", key="DATABASE_URL")


class SecretStore:
    """Stands in for the API server's Secrets; counts the reads that reach it."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads = 0

    async def get(self, _resource: Any, name: str, namespace: str) -> Secret:
        self.reads += 1
        if name not in self.values:
            response = httpx2.Response(404, json={"code": 404, "message": "not found"})
            raise ApiError(response=response)
        encoded = base64.b64encode(self.values[name].encode()).decode()
        return Secret(metadata=ObjectMeta(name=name), data={REF.key: encoded})


async def read(cache: SecretCache, store: SecretStore) -> str:
    return await cache.read_key(
        store,  # type: ignore[arg-type]
        "shop",
        REF,
        referrer="Tenant acme",
        field="spec.database.secretRef",
    )


async def test_a_burst_of_reconciles_reads_the_shared_secret_once() -> None:
    store, cache = SecretStore(), SecretCache(ttl_seconds=60)
    store.values["orion-database"] = "postgresql://orion:pw@db/orion"
    values = [await read(cache, store) for _ in range(50)]
    assert set(values) == {"postgresql://orion:pw@db/orion"}
    assert store.reads == 1


async def test_a_changed_secret_is_read_again_once_the_value_expires() -> None:
    store, cache = SecretStore(), SecretCache(ttl_seconds=0)
    store.values["orion-database"] = "postgresql://orion:old@db/orion"
    assert await read(cache, store) == "postgresql://orion:old@db/orion"
    store.values["orion-database"] = "postgresql://orion:new@db/orion"
    assert await read(cache, store) == "postgresql://orion:new@db/orion"
    assert store.reads == 2


async def test_a_missing_secret_is_not_remembered() -> None:
    store, cache = SecretStore(), SecretCache(ttl_seconds=60)
    with pytest.raises(SecretUnavailable) as missing:
        await read(cache, store)
    assert missing.value.reason == "SecretNotFound"
    store.values["orion-database"] = "postgresql://orion:pw@db/orion"
    assert await read(cache, store) == "postgresql://orion:pw@db/orion"
