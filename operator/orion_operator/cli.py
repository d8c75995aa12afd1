"""`orion-operator`: one entry point, several roles (run, crds, dev, restore, ...)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import kopf

    import orion_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=args.verbose,
        log_prefix=None,  # [namespace/name] on every object's line, except in JSON (a field there)
        log_format={
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
            "json": kopf.LogFormat.JSON,
        }[args.log_format],
    )
    namespaces = args.namespace or []
    kopf.run(
        standalone=args.standalone,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from orion_operator.api.crds import (
        dump_crd,
        dump_policies,
        render_admission_policies,
        render_crds,
        write_admission_policies,
        write_crds,
    )

    output, admission = Path(args.output), Path(args.admission_output)
    if args.check:
        expected = {output / name: dump_crd(manifest) for name, manifest in render_crds().items()}
        expected |= {
            admission / name: dump_policies(manifests)
            for name, manifests in render_admission_policies().items()
        }
        drifted = [
            path for path, text in expected.items() if not path.exists() or path.read_text() != text
        ]
        for path in drifted:
            print(f"{path} differs from the models: run `orion-operator crds`", file=sys.stderr)
        return 1 if drifted else 0
    for path in write_crds(output) + write_admission_policies(admission):
        print(path)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from orion_operator.devenv.dev import run_dev

    return run_dev(namespace=args.namespace, once=args.once)


def _demo_api(args: argparse.Namespace) -> int:
    from orion_operator.demo.api import run_demo_api

    run_demo_api(args.host, args.port)
    return 0


def _backup_run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from orion_operator.backup.job import DATABASE_URL_ENV, parse_backup_run_args
    from orion_operator.backup.run import execute_backup_run

    database_url = os.environ.get(DATABASE_URL_ENV)
    if not database_url:
        print(f"backup-run: ${DATABASE_URL_ENV} is not set", file=sys.stderr)
        return 2
    run = parse_backup_run_args(args)
    return asyncio.run(execute_backup_run(run, database_url, args.termination_log))


def _restore(args: argparse.Namespace) -> int:
    import asyncio

    from orion_operator.restore.command import restore_command

    return asyncio.run(restore_command(args))


def _restore_run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from orion_operator.backup.job import DATABASE_URL_ENV
    from orion_operator.restore.job import parse_restore_run_args
    from orion_operator.restore.run import execute_restore_run

    database_url = os.environ.get(DATABASE_URL_ENV)
    if not database_url:
        print(f"restore-run: ${DATABASE_URL_ENV} is not set", file=sys.stderr)
        return 2
    run = parse_restore_run_args(args)
    return asyncio.run(execute_restore_run(run.request(database_url), args.termination_log))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orion-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch this namespace (or glob); repeatable; default: all namespaces",
    )
    run.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: use when only one operator process can run",
    )
    run.add_argument(
        "--liveness", default=None, help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(handler=_run)

    crds = commands.add_parser("crds", help="write the CRD YAML generated from the models")
    crds.add_argument("-o", "--output", default="crds")
    crds.add_argument(
        "--admission-output",
        default="admission",
        help="where the ValidatingAdmissionPolicies go (checks a CRD schema cannot make)",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in --output differ from the models",
    )
    crds.set_defaults(handler=_crds)

    dev = commands.add_parser(
        "dev", help="local control plane + PostgreSQL + samples + the operator, in the foreground"
    )
    dev.add_argument("-n", "--namespace", default="default", help="where the samples go")
    dev.add_argument(
        "--once", action="store_true", help="exit (stopping everything) once the samples are Ready"
    )
    dev.set_defaults(handler=_dev)

    backup_run = commands.add_parser(
        "backup-run",
        help="run one backup (what a backup Job runs); the database URL comes from "
        "$DATABASE_URL and S3 keys from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY",
    )
    from orion_operator.backup.job import add_backup_run_arguments

    add_backup_run_arguments(backup_run)
    backup_run.set_defaults(handler=_backup_run)

    restore = commands.add_parser(
        "restore",
        help="restore a Backup (--backup, read through the kubeconfig) or an artifact "
        "(--from s3://... or file://...) into a database, verified, with a progress bar",
    )
    from orion_operator.restore.command import add_restore_arguments

    add_restore_arguments(restore)
    restore.set_defaults(handler=_restore)

    restore_run = commands.add_parser(
        "restore-run",
        help="run one restore (what a restore Job runs); the database URL comes from "
        "$DATABASE_URL and S3 keys from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY",
    )
    from orion_operator.restore.job import add_restore_run_arguments

    add_restore_run_arguments(restore_run)
    restore_run.set_defaults(handler=_restore_run)

    demo = commands.add_parser(
        "demo-api",
        help="a small API serving the /health contract from real checks of "
        "$DATABASE_URL, $REDIS_URL and the BullMQ queues dian, backup, reports",
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=3000)
    demo.set_defaults(handler=_demo_api)

    tenants = commands.add_parser(
        "tenants",
        help="the application's tenants against the Tenant objects; --unmanaged --manifests "
        "prints Tenants to adopt the ones no object describes",
    )
    from orion_operator.tenancy.command import add_tenants_arguments

    add_tenants_arguments(tenants)
    tenants.set_defaults(handler=_tenants)
    return parser


def _tenants(args: argparse.Namespace) -> int:
    from orion_operator.tenancy.command import run_tenants_command

    return run_tenants_command(args)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.handler(args))
