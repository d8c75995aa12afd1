"""The chart's RBAC is enough for every kind, and no more.

The chart's ServiceAccount, roles and peering object are created on the real control plane (RBAC
on), with `watchNamespaces` set to one namespace. The operator then runs as that ServiceAccount
(a token from `kubectl create token` in a kubeconfig of its own, with peering as in a cluster)
through a scenario that touches every kind: a Tenant with scheduled backups, a platform Backup,
a BackupSchedule that fires, a Restore, an ApiDeployment with migrations and a backup gate, and
a DatabaseMaintenance run. Every object must reach its good state with no 403 in the operator's
log, and `kubectl auth can-i --list` must show exactly the expected permissions.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_operator.devenv.kubectl import REPO_ROOT, kubectl
from tests.conftest import APP_ROLE, AppDatabase
from tests.health_server import ScriptedHealthServer
from tests.integration.conftest import (
    AlertReceivers,
    apply,
    condition,
    database_secret,
    get_json,
    start_operator,
    stop_operator,
    tenant,
    wait_for,
)
from tests.restore_support import url_of

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
PEERING_KINDS = {"KopfPeering", "ClusterKopfPeering"}
RUN_ANNOTATION = "maintenance.orion.io/run"

# What the ServiceAccount may do in the watched namespace: every row a verb the operator uses.
# Rows an authenticated user always has (self reviews) are listed too, so nothing is unexplained.
EXPECTED_IN_WATCHED_NAMESPACE: dict[str, set[str]] = {
    "tenants.orion.io": {"get", "list", "watch", "patch"},
    "restores.orion.io": {"get", "list", "watch", "patch"},
    "apideployments.orion.io": {"get", "list", "watch", "patch"},
    "databasemaintenances.orion.io": {"get", "list", "watch", "patch"},
    # BackupSchedules make Backups, Tenants make BackupSchedules and final Backups; retention
    # and a Tenant's removed backup block delete them.
    "backups.orion.io": {"get", "list", "watch", "patch", "create", "delete"},
    "backupschedules.orion.io": {"get", "list", "watch", "patch", "create", "delete"},
    **{
        f"{kind}/status": {"patch"}
        for kind in (
            "tenants.orion.io",
            "backups.orion.io",
            "backupschedules.orion.io",
            "restores.orion.io",
            "apideployments.orion.io",
            "databasemaintenances.orion.io",
        )
    },
    **{
        f"{kind}.orion.io/finalizers": {"update"}
        for kind in ("apideployments", "backups", "backupschedules", "restores", "tenants")
    },
    # Jobs go with their owner (garbage collection): the operator never deletes one.
    "jobs.batch": {"get", "list", "watch", "create"},
    "pods": {"list"},
    # Server-side apply that creates the object is authorised as create as well as patch.
    "deployments.apps": {"get", "list", "watch", "create", "patch"},
    "services": {"get", "list", "watch", "create", "patch"},
    "secrets": {"get"},
    "configmaps": {"get"},
    # kopf posts core v1 Events and never updates them.
    "events": {"create"},
    # kopf reads its peers from the watch stream and only patches its own entry.
    "kopfpeerings.kopf.dev": {"list", "watch", "patch"},
    # Cluster-wide, to find the namespaces and resources to watch.
    "namespaces": {"list", "watch"},
    "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
    # Every authenticated user (system:basic-user).
    "selfsubjectreviews.authentication.k8s.io": {"create"},
    "selfsubjectaccessreviews.authorization.k8s.io": {"create"},
    "selfsubjectrulesreviews.authorization.k8s.io": {"create"},
}
CLUSTER_WIDE_ONLY = {
    "namespaces",
    "customresourcedefinitions.apiextensions.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


@dataclass(frozen=True)
class ChartIdentity:
    namespace: str  # the watched namespace
    account: str  # system:serviceaccount:<release namespace>:<name>
    kubeconfig: str


def rendered_chart(release: str, release_namespace: str, watched: str) -> list[dict[str, Any]]:
    text = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "helm"),
            "template",
            release,
            str(REPO_ROOT / "charts" / "orion-operator"),
            "--namespace",
            release_namespace,
            "--kube-version",
            "1.33.0",
            "--set",
            f"watchNamespaces[0]={watched}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> str:
    """The admin kubeconfig's cluster, with the ServiceAccount's token as the only user."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "orion-operator", "user": {"token": token}}],
        "contexts": [
            {
                "name": "orion-operator",
                "context": {"cluster": cluster["name"], "user": "orion-operator"},
            }
        ],
        "current-context": "orion-operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def chart_identity(cluster: str, tmp_path: Path) -> Iterator[ChartIdentity]:
    suffix = uuid.uuid4().hex[:6]
    release, release_namespace = f"orion-lp-{suffix}", f"orion-lp-system-{suffix}"
    # Not orion-test-*: the session's operator must not act on this namespace too.
    watched = f"orion-lp-{suffix}"
    for namespace in (release_namespace, watched):
        kubectl("create", "namespace", namespace)
    objects = [
        o
        for o in rendered_chart(release, release_namespace, watched)
        if o["kind"] in RBAC_KINDS | PEERING_KINDS
    ]
    assert {o["kind"] for o in objects} == {*RBAC_KINDS, "KopfPeering"}
    manifest = yaml.safe_dump_all(objects)
    applied = kubectl(
        "apply", "--server-side", "--field-manager=least-privilege", "-f", "-", input=manifest
    )
    assert applied.returncode == 0, applied.stderr
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    token = kubectl(
        "create", "token", account, "-n", release_namespace, "--duration=2h"
    ).stdout.strip()
    try:
        yield ChartIdentity(
            namespace=watched,
            account=f"system:serviceaccount:{release_namespace}:{account}",
            kubeconfig=token_kubeconfig(cluster, token, tmp_path / "operator-kubeconfig.yaml"),
        )
    finally:
        for namespace in (watched, release_namespace):
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            f"app.kubernetes.io/instance={release}",
            check=False,
        )


def permissions(account: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` as {resource: verbs}, resource rows only."""
    listed = kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={account}").stdout
    rows: dict[str, set[str]] = {}
    for line in listed.splitlines()[1:]:
        resource, _, rest = line.partition(" ")
        if not resource or resource.startswith("["):
            continue  # non-resource URLs (/api, /healthz ...), granted to every user
        verbs = rest[rest.rindex("[") + 1 : rest.rindex("]")].split()
        rows.setdefault(resource, set()).update(verbs)
    return rows


def test_the_chart_grants_exactly_the_expected_permissions(chart_identity: ChartIdentity):
    watched = permissions(chart_identity.account, chart_identity.namespace)
    assert watched == EXPECTED_IN_WATCHED_NAMESPACE
    assert all("*" not in verbs for verbs in watched.values()) and "*" not in watched

    # Anywhere else only the cluster-wide discovery rules apply: no Secrets, no workloads.
    elsewhere = permissions(chart_identity.account, "default")
    assert set(elsewhere) == CLUSTER_WIDE_ONLY
    for verb, resource in (("get", "secrets"), ("list", "secrets"), ("create", "jobs.batch")):
        answer = kubectl(
            "auth",
            "can-i",
            verb,
            resource,
            "--all-namespaces",
            f"--as={chart_identity.account}",
            check=False,
        ).stdout.strip()
        assert answer == "no", (verb, resource)


def phase_of(kind: str, name: str, namespace: str) -> str | None:
    return get_json(kind, name, "-n", namespace).get("status", {}).get("phase")


def reaches(kind: str, name: str, namespace: str, phase: str, timeout: float = 120) -> dict:
    def check() -> dict[str, Any] | None:
        obj = get_json(kind, name, "-n", namespace)
        return obj if obj.get("status", {}).get("phase") == phase else None

    return wait_for(check, timeout, f"{kind} {name} phase {phase}")


def is_ready(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    obj = get_json(kind, name, "-n", namespace)
    ready = condition(obj)
    return obj if ready and ready["status"] == "True" else None


def test_the_operator_runs_every_kind_under_the_charts_service_account(
    chart_identity: ChartIdentity,
    alert_receivers: AlertReceivers,
    app_database: AppDatabase,
    tmp_path: Path,
):
    namespace = chart_identity.namespace
    target = f"target_{uuid.uuid4().hex[:10]}"
    app_database.server.create_database(target, owner=APP_ROLE)
    health = ScriptedHealthServer()
    artifacts = tmp_path / "backups"
    artifacts.mkdir()
    volume = {"volume": {"path": str(artifacts), "minFreePercent": 1}}
    operator = start_operator(
        chart_identity.kubeconfig,
        alert_receivers,
        tmp_path / "operator.log",
        namespace_pattern=namespace,
        standalone=False,  # peering through the chart's KopfPeering, as in a cluster
        extra_env={"ORION_BACKUP_EXECUTOR": "inline"},
    )
    try:
        with health.running():
            apply(database_secret(app_database.url), namespace)
            apply(database_secret(url_of(app_database, target), name="restore-target"), namespace)

            # Tenant: its row, and a BackupSchedule of its own for the backup block.
            applied = apply(
                tenant(
                    "acme",
                    displayName="Acme",
                    plan="pro",
                    backup={"schedule": "0 3 * * *", "storage": volume},
                ),
                namespace,
            )
            assert applied.returncode == 0, applied.stderr
            wait_for(lambda: is_ready("tenant", "acme", namespace), 90, "Tenant acme Ready")
            assert app_database.query('SELECT id, plan FROM "Tenant"') == [("acme", "pro")]
            wait_for(
                lambda: is_ready("backupschedule", "acme-backup", namespace),
                60,
                "the Tenant's BackupSchedule Ready",
            )

            # A platform Backup, then a Restore of it into an empty database.
            platform_backup = {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "Backup",
                "metadata": {"name": "nightly"},
                "spec": {"type": "platform", "executor": "inline", "storage": volume},
            }
            assert apply(platform_backup, namespace).returncode == 0
            reaches("backup", "nightly", namespace, "Completed")
            restore = {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "Restore",
                "metadata": {"name": "into-target"},
                "spec": {
                    "backupRef": {"name": "nightly"},
                    "executor": "inline",
                    "database": {"secretRef": {"name": "restore-target", "key": "DATABASE_URL"}},
                },
            }
            assert apply(restore, namespace).returncode == 0
            restored = reaches("restore", "into-target", namespace, "Completed")
            assert all(check["passed"] for check in restored["status"]["verification"])

            # A BackupSchedule that fires within a minute and makes a Backup that completes.
            schedule = {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "BackupSchedule",
                "metadata": {"name": "every-minute"},
                "spec": {
                    "schedule": "* * * * *",
                    "template": {"type": "platform", "executor": "inline", "storage": volume},
                },
            }
            assert apply(schedule, namespace).returncode == 0
            made = wait_for(
                lambda: (
                    get_json("backupschedule", "every-minute", "-n", namespace)
                    .get("status", {})
                    .get("lastBackup")
                ),
                150,
                "the schedule's first Backup",
            )
            reaches("backup", made, namespace, "Completed")

            # An ApiDeployment through the backup gate and a migration Job to a healthy rollout.
            api = {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "ApiDeployment",
                "metadata": {"name": "orion-api"},
                "spec": {
                    "image": "ghcr.io/example/orion-api:1.0.0",
                    "replicas": 2,
                    "env": [
                        {
                            "name": "DATABASE_URL",
                            "valueFrom": {
                                "secretKeyRef": {"name": "orion-database", "key": "DATABASE_URL"}
                            },
                        }
                    ],
                    "healthCheck": {"url": health.url, "intervalSeconds": 1, "timeoutSeconds": 2},
                    "dependencies": {"queues": []},
                    "preDeploy": {
                        "requireBackupWithin": "24h",
                        "backup": {"storage": volume, "executor": "inline"},
                        "migrations": {"command": ["npx", "prisma", "migrate", "deploy"]},
                    },
                },
            }
            assert apply(api, namespace).returncode == 0
            rolled_out = wait_for(
                lambda: is_ready("apideployment", "orion-api", namespace),
                180,
                "ApiDeployment orion-api Ready",
            )
            status = rolled_out["status"]
            assert status["rollout"]["result"] == "Succeeded"
            assert status["readyReplicas"] == 2
            assert condition(rolled_out, "MigrationsApplied")["reason"] == "MigrationsSucceeded"
            assert condition(rolled_out, "BackupRecent")["status"] == "True"
            assert status["health"]["state"] == "ok"

            # A DatabaseMaintenance run, on demand.
            maintenance = {
                "apiVersion": "orion.io/v1alpha1",
                "kind": "DatabaseMaintenance",
                "metadata": {"name": "weekly"},
                "spec": {"schedule": "0 3 * * 0", "tasks": {"analyze": {}, "report": {"top": 3}}},
            }
            assert apply(maintenance, namespace).returncode == 0
            reaches("databasemaintenance", "weekly", namespace, "Scheduled", 60)
            kubectl("annotate", "dbm", "weekly", "-n", namespace, f"{RUN_ANNOTATION}=now")
            ran = wait_for(
                lambda: (
                    (o := get_json("dbm", "weekly", "-n", namespace))["status"].get("lastTrigger")
                    == "now"
                    and o
                ),
                90,
                "the on-demand maintenance run",
            )
            assert ran["status"]["phase"] == "Succeeded", ran["status"]
            operator.assert_running()
    finally:
        stop_operator(operator)
        app_database.server.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')

    # A refusal shows as a 403 in the HTTP log lines, or as kopf's "Not enough permissions".
    log = operator.log()
    refused = [
        line
        for line in log.splitlines()
        if " 403 " in line or "forbidden" in line.lower() or "permissions" in line.lower()
    ]
    assert refused == [], refused[:10]
