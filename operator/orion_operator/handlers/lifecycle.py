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
from orion_operator.kube.secrets import SecretCache
from orion_operator.settings import OperatorSettings
from orion_operator.tenancy.database import ConnectionPool
from orion_operator.tenancy.integrity import IntegrityAlertGate, SharedIntegrityChecks


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
    # Per kind and namespace, at most this many objects are processed at once; the others wait
    # as queued watch events. Unbounded, 1,000 Tenants applied at once were 1,000 reconciles in
    # flight, each holding its body, its requests and a wait for a database connection.
    settings.queueing.worker_limit = 100
    # A worker keeps its slot until its object has been quiet this long (kopf waits 5 s): with
    # the limit above, kopf's default would cap the rate at 20 objects per second.
    settings.queueing.idle_timeout = 0.5
    # Normal/Warning Events are posted by a few workers: a burst of Ready transitions would
    # otherwise open one POST per object at once. Events may lag; reconciles do not wait.
    settings.posting.worker_limit = 10

    memo.settings = operator_settings
    memo.kube = AsyncClient(field_manager="orion-operator")
    memo.http = aiohttp.ClientSession()
    memo.alert_sender = BackgroundAlertSender(build_dispatcher(os.environ))
    # Tenant reconciles borrow connections: opening one per reconcile was most of their cost.
    memo.database_pool = ConnectionPool()
    # Thousands of Tenants share one database Secret: one GET per reconcile was a quarter of
    # the operator's requests and CPU.
    memo.secret_cache = SecretCache()
    # The integrity queries count a whole database: one check serves every Tenant on it.
    memo.integrity_checks = SharedIntegrityChecks()
    memo.integrity_alerts = IntegrityAlertGate()
    if memo.settings.metrics_port:
        prometheus_client.start_http_server(memo.settings.metrics_port, memo.settings.metrics_host)


@kopf.on.cleanup()
async def close_clients(memo: kopf.Memo, **_: Any) -> None:
    sender = getattr(memo, "alert_sender", None)
    if sender is not None:
        await sender.aclose()
    pool = getattr(memo, "database_pool", None)
    if pool is not None:
        await pool.close()
    for client in (getattr(memo, "http", None), getattr(memo, "kube", None)):
        if client is not None:
            await client.close()
