"""Rollouts end to end: the runbook's deployment checklist as gates, verification, rollbacks.

The real control plane runs the Deployment controller (ReplicaSets, rolling updates, the
progress deadline) and the Job controller; kwok makes pods Ready and completes Job pods. The
API is `tests.rollout_api.ImageScriptedApi`: its /health and /auth/login answer as the test
scripted for the image currently in the Deployment's template. PostgreSQL is real (backups,
triage).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from orion_operator.devenv.kubectl import kubectl
from orion_operator.devenv.postgres import free_port
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    wait_for,
)
from tests.rollout_api import ImageScriptedApi

V1 = "ghcr.io/example/orion-api:1.0.0"
V2 = "ghcr.io/example/orion-api:1.1.0"
BAD = "ghcr.io/example/orion-api:1.2.0-broken"
V3 = "ghcr.io/example/orion-api:1.2.1"
LOGIN = {
    "method": "POST",
    "path": "/auth/login",
    "headers": {"Content-Type": "application/json"},
    "body": '{"email":"test@test.com","password":"test"}',
    "expectStatus": [200, 401],
}


def manifest(api: ImageScriptedApi, image: str, **spec: Any) -> dict[str, Any]:
    rollout = {"verifySeconds": 3, "progressDeadlineSeconds": 60, **spec.pop("rollout", {})}
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "ApiDeployment",
        "metadata": {"name": "orion-api"},
        "spec": {
            "image": image,
            "replicas": 2,
            "healthCheck": {
                "url": api.url,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
            },
            "dependencies": {"queues": []},
            "rollout": rollout,
            **spec,
        },
    }


@pytest.fixture
def api(namespace: str) -> Iterator[ImageScriptedApi]:
    server = ImageScriptedApi(namespace)
    with server.running():
        yield server


def apid(namespace: str) -> dict[str, Any]:
    return get_json("apid", "orion-api", "-n", namespace)


def status(namespace: str) -> dict[str, Any]:
    return apid(namespace).get("status", {})


def template_image(namespace: str) -> str | None:
    done = kubectl(
        "get",
        "deployment",
        "orion-api",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def events(namespace: str, reason: str) -> list[dict[str, Any]]:
    items = get_json("events", "-n", namespace)["items"]
    return [
        e for e in items if e["reason"] == reason and e["involvedObject"]["kind"] == "ApiDeployment"
    ]


def phase_is(namespace: str, phase: str) -> bool:
    return status(namespace).get("phase") == phase


def released(namespace: str, image: str, timeout: float = 90) -> dict[str, Any]:
    """Wait for `image` to be rolled out, verified and stable; the object then."""

    def done() -> dict[str, Any] | None:
        found = status(namespace)
        rollout = found.get("rollout") or {}
        ok = rollout.get("image") == image and rollout.get("result") == "Succeeded"
        return found if ok and found.get("phase") == "Healthy" else None

    return wait_for(done, timeout, f"{image} to be rolled out and Healthy")


def rollout_alerts(receivers: AlertReceivers, namespace: str) -> list[dict[str, Any]]:
    verifier = Webhook(receivers.webhook_secret)
    # Only this test's alerts are verified: the signature check refuses timestamps older than
    # five minutes, and the receiver keeps every alert of the session.
    ours = [
        r
        for r in receivers.http.to("/orion-alerts")
        if json.loads(r.body)["object"]["namespace"] == namespace
    ]
    payloads = [verifier.verify(r.body, r.headers) for r in ours]
    return [p for p in payloads if p["check"].startswith("rollout/")]


def update(namespace: str, api: ImageScriptedApi, image: str, **spec: Any) -> None:
    applied = apply(manifest(api, image, **spec), namespace)
    assert applied.returncode == 0, applied.stderr


@pytest.fixture
def cordoned(cluster: str) -> Iterator[list[str]]:
    """Every node unschedulable: new pods wait in Pending until the test ends."""
    nodes = kubectl("get", "nodes", "-o", "name").stdout.split()
    yield nodes
    for node in nodes:
        kubectl("uncordon", node, check=False)


def cordon(nodes: list[str]) -> None:
    for node in nodes:
        kubectl("cordon", node)


def test_a_good_rollout_runs_every_gate_and_ends_healthy_with_the_new_stable_image(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,
    tmp_path: Path,
) -> None:
    apply(database_secret(app_database.url), namespace)
    pre_deploy = {
        "requireBackupWithin": "24h",
        "backup": {"storage": {"volume": {"path": str(tmp_path), "minFreePercent": 1}}},
        "migrations": {"command": ["npx", "prisma", "migrate", "deploy"]},
    }
    env = [
        {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "orion-database", "key": "DATABASE_URL"}},
        }
    ]
    # No Backup exists yet: the first rollout takes one before anything else.
    update(namespace, api, V1, env=env, preDeploy=pre_deploy)
    first = released(namespace, V1)
    assert first["stableImage"] == V1 and first["stableRevision"] == 1
    backup = get_json("backup", "orion-api-predeploy-g1", "-n", namespace)
    assert backup["status"]["phase"] == "Completed"
    assert backup["spec"]["database"]["secretRef"] == {
        "name": "orion-database",
        "key": "DATABASE_URL",
    }
    assert "ownerReferences" not in backup["metadata"]  # it must outlive the ApiDeployment
    job = get_json("job", "orion-api-migrate-g1", "-n", namespace)
    assert backup["status"]["completedAt"] <= job["metadata"]["creationTimestamp"]

    # An upgrade: the Backup from a moment ago is recent, the migrations run in the new image.
    update(namespace, api, V2, env=env, preDeploy=pre_deploy, rollout={"smoke": [LOGIN]})
    second = released(namespace, V2)
    assert template_image(namespace) == V2
    assert second["stableImage"] == V2 and second["currentImage"] == V2
    assert second["rollout"]["backup"] == "orion-api-predeploy-g1"
    assert second["rollout"]["verify"]["smokePassed"] is True
    assert second["rollout"]["verify"]["failures"] == 0
    migrate = get_json("job", "orion-api-migrate-g2", "-n", namespace)
    (container,) = migrate["spec"]["template"]["spec"]["containers"]
    assert container["image"] == V2
    assert container["command"] == ["npx", "prisma", "migrate", "deploy"]
    assert container["env"] == env
    assert migrate["metadata"]["ownerReferences"][0]["kind"] == "ApiDeployment"
    assert V2 in api.logins  # the smoke request reached the new image

    obj = apid(namespace)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in second["conditions"]}
    assert conditions["ConfigurationPresent"] == ("True", "ConfigurationFound")
    assert conditions["BackupRecent"] == ("True", "RecentBackupFound")
    assert conditions["MigrationsApplied"] == ("True", "MigrationsSucceeded")
    assert conditions["Verified"] == ("True", "VerificationPassed")
    assert conditions["RolledBack"] == ("False", "NotRolledBack")
    assert conditions["Ready"][0] == "True"
    assert [(h["revision"], h["image"], h["result"]) for h in second["history"]] == [
        (1, V1, "Succeeded"),
        (2, V2, "Succeeded"),
    ]
    assert second["history"][0]["backup"] == "orion-api-predeploy-g1"
    assert condition(obj, "Ready")["status"] == "True"
    for reason in (
        "RolloutStarted",
        "BackupStarted",
        "BackupCompleted",
        "BackupRecent",
        "MigrationsStarted",
        "MigrationsSucceeded",
        "RollingOut",
        "Verifying",
        "RolloutSucceeded",
    ):
        assert events(namespace, reason), f"no {reason} Event"

    wide = kubectl("get", "apid", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[8:11] == ["STABLE", "ROLLOUT", "GATE"]
    assert wide[1].split()[8:11] == [V2, "Succeeded", "Verify"]


def test_a_bad_image_is_rolled_back_and_not_rolled_out_again_until_the_spec_changes(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,
    alert_receivers: AlertReceivers,
) -> None:
    apply(database_secret(app_database.url), namespace)
    api.health[BAD] = "500"
    update(namespace, api, V1)
    released(namespace, V1)

    update(namespace, api, BAD)
    wait_for(lambda: phase_is(namespace, "RolledBack"), timeout=60, what="phase RolledBack")
    assert template_image(namespace) == V1
    found = status(namespace)
    assert found["failedImage"] == BAD and found["stableImage"] == V1
    assert found["failedGeneration"] == apid(namespace)["metadata"]["generation"]
    rolled_back = condition(apid(namespace), "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "VerificationFailed")
    assert "HTTP 500" in rolled_back["message"]
    assert f"rolled back from {BAD} to revision 1 ({V1})" in rolled_back["message"]
    assert condition(apid(namespace), "Ready")["status"] == "False"
    (event,) = events(namespace, "RolledBack")
    assert event["type"] == "Warning"
    alert = wait_for(
        lambda: [
            a for a in rollout_alerts(alert_receivers, namespace) if a["reason"] == "RolledBack"
        ],
        timeout=30,
        what="the RolledBack alert",
    )[0]
    assert alert["severity"] == "critical" and alert["check"] == "rollout/rollback"
    # Three bad probes during verification, no more.
    assert found["rollout"]["verify"]["failures"] == 3
    assert found["history"][-1]["result"] == "RolledBack"

    # The same spec again, as a GitOps tool re-applying its repository: no new rollout.
    generation = apid(namespace)["metadata"]["generation"]
    update(namespace, api, BAD)
    kubectl("scale", "apideployment/orion-api", "-n", namespace, "--replicas=3")
    wait_for(lambda: status(namespace).get("targetReplicas") == 3, what="the scale to be followed")
    assert apid(namespace)["metadata"]["generation"] > generation
    after = status(namespace)
    assert template_image(namespace) == V1
    assert after["rollout"]["revision"] == found["rollout"]["revision"]
    assert after["phase"] == "RolledBack"
    assert [change.image for change in api.changes] == [V1, BAD, V1]

    # A new spec is a new rollout.
    update(namespace, api, V3, replicas=3)
    done = released(namespace, V3)
    assert "failedImage" not in done
    assert [h["result"] for h in done["history"]] == ["Succeeded", "RolledBack", "Succeeded"]


def test_a_failing_migration_job_leaves_the_old_image_running(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,
    alert_receivers: AlertReceivers,
    cordoned: list[str],
) -> None:
    apply(database_secret(app_database.url), namespace)
    update(namespace, api, V1)
    released(namespace, V1)

    # kwok completes every Job pod as Succeeded and cannot make one fail. A failing migration
    # is made by the Job controller itself: with every node cordoned the pod never starts,
    # and the Job fails with DeadlineExceeded when activeDeadlineSeconds passes.
    cordon(cordoned)
    update(namespace, api, V2, preDeploy={"migrations": {"activeDeadlineSeconds": 2}})
    wait_for(lambda: phase_is(namespace, "Failed"), timeout=60, what="phase Failed")
    found = status(namespace)
    assert template_image(namespace) == V1
    assert found["currentImage"] == V1 and found["stableImage"] == V1
    assert found["rollout"]["reason"] == "MigrationsFailed"
    assert "DeadlineExceeded" in found["rollout"]["message"]
    assert f"the Deployment keeps {V1}" in found["rollout"]["message"]
    migrations = condition(apid(namespace), "MigrationsApplied")
    assert (migrations["status"], migrations["reason"]) == ("False", "MigrationsFailed")
    job = get_json("job", "orion-api-migrate-g2", "-n", namespace)
    assert any(c["reason"] == "DeadlineExceeded" for c in job["status"]["conditions"])
    alert = wait_for(
        lambda: rollout_alerts(alert_receivers, namespace), timeout=30, what="the alert"
    )[0]
    assert (alert["reason"], alert["check"]) == ("MigrationsFailed", "rollout/migrations")
    # The old pods were never touched.
    assert get_json("deployment", "orion-api", "-n", namespace)["status"]["readyReplicas"] == 2


def test_a_missing_recent_backup_is_taken_first_and_a_failed_one_stops_the_rollout(
    operator: OperatorProcess, namespace: str, api: ImageScriptedApi, tmp_path: Path
) -> None:
    # The database is unreachable, so the pre-rollout Backup fails.
    apply(database_secret(f"postgresql://orion:pw@127.0.0.1:{free_port()}/orion"), namespace)
    update(namespace, api, V1)
    released(namespace, V1)
    pre_deploy = {
        "requireBackupWithin": "1h",
        "backup": {"storage": {"volume": {"path": str(tmp_path), "minFreePercent": 1}}},
    }
    update(namespace, api, V2, preDeploy=pre_deploy)
    wait_for(lambda: phase_is(namespace, "Failed"), timeout=60, what="phase Failed")
    found = status(namespace)
    backup = get_json("backup", found["rollout"]["backup"], "-n", namespace)
    assert backup["status"]["phase"] == "Failed"
    assert found["rollout"]["reason"] == "BackupFailed"
    assert (
        f"the pre-rollout Backup {backup['metadata']['name']} failed" in found["rollout"]["message"]
    )
    assert "nothing was restarted" in found["rollout"]["message"]
    assert template_image(namespace) == V1
    gate = condition(apid(namespace), "BackupRecent")
    assert (gate["status"], gate["reason"]) == ("False", "BackupFailed")
    assert condition(apid(namespace), "MigrationsApplied")["reason"] == "NotReached"


def test_a_database_outage_during_verification_does_not_roll_back_and_says_why(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,
) -> None:
    unreachable = f"postgresql://orion:pw-never-shown@127.0.0.1:{free_port()}/orion"
    apply(database_secret(app_database.url), namespace)
    update(namespace, api, V1)
    released(namespace, V1)

    # The database goes away while V2 is verified: /health says error, triage confirms it.
    apply(database_secret(unreachable), namespace)
    api.health[V2] = "error"
    update(namespace, api, V2, rollout={"verifySeconds": 3})
    skipped = wait_for(
        lambda: events(namespace, "RollbackSkipped"), timeout=60, what="RollbackSkipped"
    )[0]
    assert "database down" in skipped["message"] and "not rolled back" in skipped["message"]
    obj = apid(namespace)
    rolled_back = condition(obj, "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("False", "RollbackWouldNotHelp")
    verified = condition(obj, "Verified")
    assert (verified["status"], verified["reason"]) == ("False", "VerificationPaused")
    assert obj["status"]["phase"] == "Progressing"
    assert template_image(namespace) == V2
    assert not events(namespace, "RolledBack")
    assert "pw-never-shown" not in json.dumps(obj)
    assert "pw-never-shown" not in json.dumps(get_json("events", "-n", namespace))

    # Stays so while the database is down...
    wait_for(lambda: len([p for p in api.probes if p.image == V2]) >= 8, what="more probes")
    assert template_image(namespace) == V2 and not events(namespace, "RolledBack")

    # ...and once it is back, verification starts over and V2 becomes stable.
    apply(database_secret(app_database.url), namespace)
    api.health[V2] = "ok"
    done = released(namespace, V2, timeout=60)
    assert done["stableImage"] == V2
    assert events(namespace, "VerificationResumed")


def test_missing_configuration_blocks_the_rollout_and_names_it(
    operator: OperatorProcess, namespace: str, api: ImageScriptedApi
) -> None:
    update(namespace, api, V1)
    released(namespace, V1)
    env_from = [{"secretRef": {"name": "orion-api-secrets"}}]
    env = [
        {
            "name": "FEATURES",
            "valueFrom": {"configMapKeyRef": {"name": "orion-api-config", "key": "features"}},
        }
    ]
    update(namespace, api, V2, envFrom=env_from, env=env)
    wait_for(lambda: phase_is(namespace, "Blocked"), timeout=30, what="phase Blocked")
    gate = condition(apid(namespace), "ConfigurationPresent")
    assert gate["status"] == "False"
    assert 'Secret "orion-api-secrets" not found (spec.envFrom[0].secretRef)' in gate["message"]
    assert (
        'ConfigMap "orion-api-config" not found '
        "(spec.env[FEATURES].valueFrom.configMapKeyRef)" in gate["message"]
    )
    assert template_image(namespace) == V1
    assert events(namespace, "ConfigurationMissing")[0]["type"] == "Warning"

    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "orion-api-secrets"},
            "stringData": {"JWT_SECRET": "x"},
        },
        namespace,
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "orion-api-config"},
            "data": {"features": "all"},
        },
        namespace,
    )
    released(namespace, V2, timeout=60)


def test_the_progress_deadline_rolls_back_when_new_pods_never_become_available(
    operator: OperatorProcess,
    namespace: str,
    app_database: AppDatabase,
    api: ImageScriptedApi,
    cordoned: list[str],
) -> None:
    apply(database_secret(app_database.url), namespace)
    update(namespace, api, V1)
    released(namespace, V1)

    cordon(cordoned)  # V2's pods stay Pending
    update(namespace, api, V2, rollout={"progressDeadlineSeconds": 4})
    wait_for(lambda: phase_is(namespace, "RolledBack"), timeout=60, what="phase RolledBack")
    assert template_image(namespace) == V1
    rolled_back = condition(apid(namespace), "RolledBack")
    assert rolled_back["reason"] == "ProgressDeadlineExceeded"
    assert "within 4s" in rolled_back["message"]


def test_manual_rollback_to_a_revision_in_history(
    operator: OperatorProcess, namespace: str, api: ImageScriptedApi
) -> None:
    update(namespace, api, V1)
    released(namespace, V1)
    update(namespace, api, V2)
    released(namespace, V2)

    update(namespace, api, V2, rollbackTo=1)
    wait_for(lambda: phase_is(namespace, "RolledBack"), timeout=60, what="phase RolledBack")
    assert template_image(namespace) == V1
    obj = apid(namespace)
    rolled_back = condition(obj, "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "ManualRollback")
    assert obj["status"]["stableImage"] == V1
    wait_for(
        lambda: condition(apid(namespace), "Ready")["status"] == "True",
        what="Ready: the spec asked for this",
    )

    # A revision that is not in history changes nothing and says so.
    update(namespace, api, V2, rollbackTo=9)
    wait_for(
        lambda: status(namespace)["rollout"].get("reason") == "RevisionNotFound",
        what="RevisionNotFound",
    )
    assert template_image(namespace) == V1
    assert "revision 9 is not a succeeded revision" in status(namespace)["rollout"]["message"]
