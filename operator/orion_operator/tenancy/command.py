"""`orion-operator tenants`: the application's tenants against the Tenant objects in a namespace.

With `--unmanaged`, only those no Tenant describes; with `--manifests`, Tenant manifests for them
(YAML, ready for `kubectl apply -f -` or a GitOps repository).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import yaml
from lightkube import AsyncClient, ConfigError
from lightkube.core.exceptions import ApiError

from orion_operator.api.common import (
    DEFAULT_DATABASE_SECRET,
    DEFAULT_DATABASE_SECRET_KEY,
    SecretKeyRef,
)
from orion_operator.api.tenant import ProvisioningMode
from orion_operator.kube.resources import TenantResource
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.settings import OperatorSettings
from orion_operator.tenancy.adoption import adoption_manifest, unmanaged
from orion_operator.tenancy.database import connect
from orion_operator.tenancy.errors import TenancyError
from orion_operator.tenancy.mapping import table_of
from orion_operator.tenancy.rows import TenantRecord, list_tenants

DATABASE_URL_ENV = "DATABASE_URL"


def add_tenants_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unmanaged", action="store_true", help="only tenants no Tenant object describes"
    )
    parser.add_argument(
        "--manifests",
        action="store_true",
        help="print Tenant manifests (YAML) for the unmanaged tenants instead of a table",
    )
    parser.add_argument(
        "--provisioning",
        choices=[mode.value for mode in ProvisioningMode],
        default=ProvisioningMode.OBSERVE.value,
        help="provisioning of the printed manifests (default observe: adopting writes nothing)",
    )
    parser.add_argument(
        "-n", "--namespace", default=None, help="the Tenants' namespace (default: the kubeconfig's)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--database-url", default=None, help=f"the application database (or ${DATABASE_URL_ENV})"
    )
    source.add_argument(
        "--secret",
        default=None,
        metavar="[NAMESPACE/]NAME[:KEY]",
        help=f"a Secret holding the URL (default {DEFAULT_DATABASE_SECRET}:"
        f"{DEFAULT_DATABASE_SECRET_KEY} in the namespace)",
    )


def _secret(text: str | None, namespace: str) -> tuple[str, SecretKeyRef]:
    text = text or DEFAULT_DATABASE_SECRET
    if "/" in text:
        namespace, text = text.split("/", 1)
    name, _, key = text.partition(":")
    return namespace, SecretKeyRef(name=name, key=key or DEFAULT_DATABASE_SECRET_KEY)


async def _described(client: AsyncClient, namespace: str) -> dict[str, str]:
    """tenant id → name of the Tenant object describing it."""
    described = {}
    async for obj in client.list(TenantResource, namespace=namespace):
        data = obj.to_dict()
        name = data["metadata"]["name"]
        described[str((data.get("spec") or {}).get("tenantId") or name)] = name
    return described


async def tenants_command(args: argparse.Namespace) -> int:
    settings = OperatorSettings()
    try:
        client = AsyncClient(namespace=args.namespace, field_manager="orion-operator")
    except ConfigError as error:
        print(f"tenants: no usable kubeconfig: {error}", file=sys.stderr)
        return 2
    try:
        namespace = args.namespace or client.namespace
        url = args.database_url or (None if args.secret else os.environ.get(DATABASE_URL_ENV))
        if url is None:
            secret_namespace, ref = _secret(args.secret, namespace)
            url = await read_secret_key(
                client, secret_namespace, ref, referrer="orion-operator tenants", field="--secret"
            )
        described = await _described(client, namespace)
        async with connect(
            url, connect_timeout_seconds=settings.database_connect_timeout_seconds
        ) as conn:
            records = await list_tenants(conn, table_of(settings.tenant_table))
    except (SecretUnavailable, TenancyError) as error:
        print(f"tenants: {error.message}", file=sys.stderr)
        return 1
    except ApiError as error:
        print(f"tenants: {error.status.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()

    shown = unmanaged(records, set(described)) if args.unmanaged or args.manifests else records
    if args.manifests:
        return _print_manifests(shown, namespace, ProvisioningMode(args.provisioning))
    _print_table(shown, described)
    return 0


def _print_table(records: list[TenantRecord], described: dict[str, str]) -> None:
    rows = [("TENANT ID", "NAME", "PLAN", "STATUS", "TENANT OBJECT")]
    rows += [
        (r.tenant_id, r.name, r.plan, r.state.value, described.get(r.tenant_id, "<none>"))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _print_manifests(
    records: list[TenantRecord], namespace: str, provisioning: ProvisioningMode
) -> int:
    manifests: list[dict[str, Any]] = []
    refused = 0
    for record in records:
        adoption = adoption_manifest(record, namespace, provisioning)
        if adoption.manifest is None:
            refused += 1
            print(f"# skipped: {adoption.problem}", file=sys.stderr)
        else:
            manifests.append(adoption.manifest)
    if manifests:
        print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 1 if refused else 0


def run_tenants_command(args: argparse.Namespace) -> int:
    return asyncio.run(tenants_command(args))
