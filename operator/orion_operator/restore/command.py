"""`orion-operator restore`: a restore from a terminal, through the same code as the Restore kind.

The source is a Backup object (read through the kubeconfig, with its S3 credentials Secret) or a
URI; the target is `--database-url`, else `$DATABASE_URL`, else (with `--backup`) a Secret in the
Backup's namespace. Progress goes to stderr, the outcome to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from lightkube import AsyncClient, ConfigError
from lightkube.core.exceptions import ApiError

from orion_operator.api.common import (
    DEFAULT_DATABASE_SECRET,
    DEFAULT_DATABASE_SECRET_KEY,
    SecretKeyRef,
)
from orion_operator.backup.job import DATABASE_URL_ENV
from orion_operator.kube.secrets import SecretUnavailable, read_secret_key
from orion_operator.redaction import redact
from orion_operator.restore.artifact import parse_source_uri
from orion_operator.restore.errors import RestoreError, VerificationFailed
from orion_operator.restore.progress import TerminalProgress
from orion_operator.restore.run import RestoreRequest, RestoreResult, run_restore
from orion_operator.restore.source import ArtifactSource, backup_source
from orion_operator.restore.verify import DEFAULT_CHECKS, Check

REFERRER = "orion-operator restore"


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--backup", metavar="NAME", help="a Completed Backup, read through the kubeconfig"
    )
    source.add_argument(
        "--from",
        dest="from_uri",
        metavar="URI",
        help="s3://<bucket>/<key>, file:///<path> or a path; its manifest must be beside it",
    )
    parser.add_argument(
        "-n", "--namespace", default=None, help="the Backup's namespace (default: the kubeconfig's)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="the target database; $DATABASE_URL is better: other users' `ps` cannot see it",
    )
    parser.add_argument(
        "--database-secret",
        default=None,
        metavar="NAME[:KEY]",
        help="with --backup and no URL given: the target's Secret in the Backup's namespace "
        f"(default {DEFAULT_DATABASE_SECRET}:{DEFAULT_DATABASE_SECRET_KEY})",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty database (platform) or the tenant's existing rows (tenant)",
    )
    parser.add_argument(
        "--allow-added-nullable-columns",
        action="store_true",
        help="tenant restores: fill columns added since the backup with NULL or their default",
    )
    parser.add_argument(
        "--verify",
        action="append",
        metavar="SQL",
        help="a query that must return a number >= 1 (repeatable; default: SELECT COUNT(*) FROM "
        '"Tenant")',
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the verification queries")
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        help="with --from s3://: the S3 endpoint (default $AWS_ENDPOINT_URL, else AWS); the keys "
        "come from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY",
    )
    parser.add_argument("--s3-region", default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


@dataclass(frozen=True)
class _Resolved:
    source: ArtifactSource
    database_url: str


def _checks(args: argparse.Namespace) -> tuple[Check, ...]:
    if args.no_verify:
        return ()
    if args.verify:
        return tuple(Check(text, min=1) for text in args.verify)
    return DEFAULT_CHECKS


def _secret_ref(text: str | None) -> SecretKeyRef:
    name, _, key = (text or DEFAULT_DATABASE_SECRET).partition(":")
    return SecretKeyRef(name=name, key=key or DEFAULT_DATABASE_SECRET_KEY)


async def _resolve(args: argparse.Namespace) -> _Resolved:
    database_url = args.database_url or os.environ.get(DATABASE_URL_ENV)
    if args.from_uri:
        if not database_url:
            raise RestoreError(
                "NoTarget", f"--from needs the target database: set ${DATABASE_URL_ENV}"
            )
        endpoint = args.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL")
        location, key = parse_source_uri(
            args.from_uri, s3_endpoint=endpoint, s3_region=args.s3_region
        )
        return _Resolved(ArtifactSource(location, key), database_url)
    try:
        client = AsyncClient(namespace=args.namespace, field_manager="orion-operator")
    except ConfigError as error:
        raise RestoreError("NoKubeconfig", f"--backup reads the cluster: {error}") from None
    try:
        namespace = args.namespace or client.namespace
        source = await backup_source(client, namespace, args.backup, referrer=REFERRER)
        if not database_url:
            database_url = await read_secret_key(
                client,
                namespace,
                _secret_ref(args.database_secret),
                referrer=REFERRER,
                field="--database-secret",
            )
        return _Resolved(source, database_url)
    except SecretUnavailable as error:
        raise RestoreError(error.reason, error.message) from None
    except ApiError as error:
        raise RestoreError("KubernetesError", f"reading the cluster failed: {error}") from None
    finally:
        await client.close()


def _report(result: RestoreResult) -> None:
    print(result.message)
    for check in result.verification:
        print(f"  {check.describe()}")
    for table, count in sorted(result.row_counts.items()):
        print(f"  {table}: {count} rows")


async def restore_command(args: argparse.Namespace) -> int:
    progress = TerminalProgress(sys.stderr)
    try:
        resolved = await _resolve(args)
        request = RestoreRequest(
            database_url=resolved.database_url,
            location=resolved.source.location,
            key=resolved.source.key,
            overwrite=args.overwrite,
            expected_sha256=resolved.source.expected_sha256,
            checks=_checks(args),
            allow_added_nullable_columns=args.allow_added_nullable_columns,
        )
        if args.no_progress:
            result = await run_restore(request)
        else:
            try:
                result = await run_restore(request, progress)
            finally:
                progress.finish()
    except VerificationFailed as failed:
        _report(failed.result)
        print(f"restore failed: {failed.reason}: {failed.message}", file=sys.stderr)
        return 1
    except RestoreError as error:
        print(f"restore failed: {error.reason}: {redact(error.message)}", file=sys.stderr)
        return 1
    _report(result)
    return 0
