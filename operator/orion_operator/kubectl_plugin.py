"""`kubectl orion status`: the runbook's daily checklist, read from the cluster.

kubectl runs any `kubectl-orion` on PATH as `kubectl orion`; this reads the objects and Events,
and `orion_operator.checklist` turns them into green and red lines.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lightkube import Client, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Event

from orion_operator.checklist import (
    ClusterState,
    Thresholds,
    build_checklist,
    checklist_json,
    render_text,
)
from orion_operator.kube.resources import (
    ApiDeploymentResource,
    BackupResource,
    BackupScheduleResource,
)

EXIT_RED = 1
EXIT_ERROR = 2


class PluginError(Exception):
    """Something to tell the user on stderr (exit status 2)."""


def _merged_by_kubectl() -> dict[str, Any]:
    """$KUBECONFIG's files merged by kubectl itself, so its rules decide (first file wins)."""
    try:
        merged = subprocess.run(
            ["kubectl", "config", "view", "--raw", "--flatten", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        raise PluginError("$KUBECONFIG lists several files: merging them needs kubectl") from None
    if merged.returncode != 0:
        raise PluginError(f"cannot merge the $KUBECONFIG files: {merged.stderr.strip()}")
    config: dict[str, Any] = json.loads(merged.stdout)
    return config


def load_config(kubeconfig: str | None, context: str | None) -> SingleConfig:
    """As kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster.

    A $KUBECONFIG list with several existing files is merged by kubectl, as kubectl would use it.
    """
    candidates = (
        [kubeconfig]
        if kubeconfig
        else [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    )
    if not candidates:
        candidates = [str(Path("~/.kube/config").expanduser())]
    existing = [p for p in candidates if Path(p).expanduser().is_file()]
    path = existing[0] if existing else None
    try:
        if len(existing) > 1:
            config = KubeConfig.from_dict(_merged_by_kubectl())
        elif path is not None:
            config = KubeConfig.from_file(Path(path).expanduser())
        elif kubeconfig:
            raise PluginError(f"--kubeconfig {kubeconfig}: no such file")
        else:
            config = KubeConfig.from_service_account()
        single = config.get(context_name=context)
    except ConfigError as error:
        raise PluginError(f"cannot load the kubeconfig: {error}") from None
    if single is None:
        raise PluginError(f"no context {context!r} in the kubeconfig" if context else "no context")
    return single


def _status_code(error: Exception) -> int | None:
    if isinstance(error, ApiError):
        return error.status.code
    # A 404 with a plain-text body (no such API group) comes as the HTTP client's own error.
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _list(client: Client, resource: Any, namespace: str, **selectors: Any) -> list[dict[str, Any]]:
    plural = resource._api_info.plural
    try:
        return [obj.to_dict() for obj in client.list(resource, namespace=namespace, **selectors)]
    except Exception as error:  # connection refused, TLS, DNS, 403: the message says which
        if _status_code(error) == 404:
            raise PluginError(
                f"the cluster has no {plural} resource: are the Orion CRDs installed?"
            ) from None
        raise PluginError(f"cannot list {plural}: {error}") from None


def read_cluster_state(client: Client, namespace: str | None) -> ClusterState:
    """The objects the checklist reads; `namespace` None for all namespaces."""
    scope = "*" if namespace is None else namespace
    return ClusterState(
        api_deployments=_list(client, ApiDeploymentResource, scope),
        backup_schedules=_list(client, BackupScheduleResource, scope),
        backups=_list(client, BackupResource, scope),
        # Only Warnings can be critical alerts; the rest is filtered by the checklist.
        events=_list(client, Event, scope, fields={"type": "Warning"}),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl orion", description="Orion Operator's kubectl plugin."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser(
        "status",
        help="the runbook's daily checklist, computed from the cluster",
        description="Exit status: 0 when no line is red, 1 when one is, 2 on errors.",
    )
    status.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace at once"
    )
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")
    status.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    status.add_argument("--context", help="kubeconfig context (default: the current one)")
    status.add_argument(
        "--backup-max-age-hours",
        type=float,
        default=26.0,
        help="a schedule's last successful backup older than this is red (default 26)",
    )
    status.add_argument(
        "--min-free-percent",
        type=float,
        default=20.0,
        help="a backup volume needs more than this free (default 20)",
    )
    status.add_argument(
        "--alert-window-hours",
        type=float,
        default=24.0,
        help="critical alerts in this many hours make the line red (default 24)",
    )
    return parser


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.kubeconfig, args.context)
    namespace = None if args.all_namespaces else (args.namespace or config.namespace)
    thresholds = Thresholds(
        backup_max_age=datetime.timedelta(hours=args.backup_max_age_hours),
        min_free_percent=args.min_free_percent,
        alert_window=datetime.timedelta(hours=args.alert_window_hours),
    )
    client = Client(config=config, field_manager="kubectl-orion")
    state = read_cluster_state(client, namespace)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    checklist = build_checklist(state, now, thresholds)
    if args.output == "json":
        json.dump(checklist_json(checklist, namespace=namespace), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        scope = "all namespaces" if namespace is None else f"namespace {namespace}"
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(render_text(checklist, scope=scope, colour=colour))
    return 0 if checklist.ok else EXIT_RED


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _status(args)
    except PluginError as error:
        print(f"kubectl orion: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
