"""Operator start-up and clean-up: kopf settings and the shared clients."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import aiohttp
import kopf
import prometheus_client
from lightkube import AsyncClient

from orion_operator import API_GROUP
from orion_operator.alerts.dispatch import build_dispatcher
from orion_operator.alerts.sender import BackgroundAlertSender
from orion_operator.settings import OperatorSettings


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own annotation prefix and finalizer name, so kopf's bookkeeping is recognisably ours.
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Only warnings and errors become Events: periodic resyncs would otherwise flood them.
    settings.posting.level = logging.WARNING
    # Kopf peering (one active replica) uses this name; see `orion-operator run --standalone`.
    # Peers of equal priority all pause, so each replica draws its own: the highest reconciles.
    # A killed replica stays "alive" for its lifetime, which bounds the standby's takeover time.
    operator_settings = OperatorSettings()
    settings.peering.name = "orion-operator"
    settings.peering.priority = operator_settings.peering_priority or random.randint(1, 2**31 - 1)
    settings.peering.lifetime = operator_settings.peering_lifetime_seconds
    # Watches are re-established every 5 minutes to survive silent connection drops.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60

    memo.settings = operator_settings
    memo.kube = AsyncClient(field_manager="orion-operator")
    memo.http = aiohttp.ClientSession()
    memo.alert_sender = BackgroundAlertSender(build_dispatcher(os.environ))
    if memo.settings.metrics_port:
        prometheus_client.start_http_server(memo.settings.metrics_port, memo.settings.metrics_host)


@kopf.on.cleanup()
async def close_clients(memo: kopf.Memo, **_: Any) -> None:
    sender = getattr(memo, "alert_sender", None)
    if sender is not None:
        await sender.aclose()
    for client in (getattr(memo, "http", None), getattr(memo, "kube", None)):
        if client is not None:
            await client.close()
