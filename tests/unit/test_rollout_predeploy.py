"""The pre-deploy gates' pure parts: configuration references, recent backups, the objects."""

from __future__ import annotations

import datetime
from typing import Any

from orion_operator.api.apideployment import ApiDeploymentSpec
from orion_operator.api.common import SecretKeyRef
from orion_operator.kube.status import merge_diff, with_merge_diffs
from orion_operator.rollout.config import FoundObject, config_references, missing_configuration
from orion_operator.rollout.predeploy import (
    backup_name,
    backup_view,
    migration_job_name,
    recent_backup,
    render_migration_job,
    render_predeploy_backup,
)
from orion_operator.rollout.render import Owner, render_pod_template

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
OWNER = Owner("orion.io/v1alpha1", "ApiDeployment", "orion-api", "uid-1")
DATABASE = SecretKeyRef(name="orion-database", key="DATABASE_URL")


def _spec(**fields: Any) -> ApiDeploymentSpec:
    return ApiDeploymentSpec.model_validate({"image": "api:2", **fields})


SPEC = _spec(
    env=[
        {"name": "NODE_ENV", "value": "production"},
        {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "orion-database", "key": "DATABASE_URL"}},
        },
        {
            "name": "FEATURES",
            "valueFrom": {"configMapKeyRef": {"name": "orion-api-config", "key": "features"}},
        },
    ],
    envFrom=[{"secretRef": {"name": "orion-api-secrets"}}, {"configMapRef": {"name": "flags"}}],
)


def test_every_secret_and_configmap_the_pods_read_is_a_reference_with_its_field() -> None:
    assert [(r.kind, r.name, r.key, r.field) for r in config_references(SPEC)] == [
        (
            "Secret",
            "orion-database",
            "DATABASE_URL",
            "spec.env[DATABASE_URL].valueFrom.secretKeyRef",
        ),
        (
            "ConfigMap",
            "orion-api-config",
            "features",
            "spec.env[FEATURES].valueFrom.configMapKeyRef",
        ),
        ("Secret", "orion-api-secrets", None, "spec.envFrom[0].secretRef"),
        ("ConfigMap", "flags", None, "spec.envFrom[1].configMapRef"),
    ]


def test_missing_objects_and_keys_are_named_with_the_field_that_names_them() -> None:
    objects = {
        ("Secret", "orion-database"): FoundObject(keys=frozenset({"REDIS_URL"})),
        ("ConfigMap", "orion-api-config"): FoundObject(keys=frozenset({"features"})),
        ("Secret", "orion-api-secrets"): FoundObject(forbidden=True),
    }
    assert missing_configuration(config_references(SPEC), objects, "shop") == [
        'Secret "orion-database" has no key "DATABASE_URL" '
        "(spec.env[DATABASE_URL].valueFrom.secretKeyRef)",
        'the operator may not read Secret "orion-api-secrets" in namespace "shop" '
        "(spec.envFrom[0].secretRef)",
        'ConfigMap "flags" not found (spec.envFrom[1].configMapRef)',
    ]


def _backup(name: str, finished: str | None, **spec: Any) -> dict[str, Any]:
    phase = "Completed" if finished else "Failed"
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {"phase": phase, "completedAt": finished},
    }


def test_the_newest_completed_platform_backup_of_the_same_database_within_the_window() -> None:
    backups = [
        _backup("old", "2026-02-27T12:00:00Z"),
        _backup("recent", "2026-03-01T09:00:00Z"),
        _backup("newest", "2026-03-01T11:00:00Z"),
        _backup("failed", None),
        _backup("tenant", "2026-03-01T11:30:00Z", type="tenant", tenantRef={"name": "acme"}),
        _backup(
            "other-db",
            "2026-03-01T11:40:00Z",
            database={"secretRef": {"name": "other", "key": "DATABASE_URL"}},
        ),
    ]
    within = datetime.timedelta(hours=24)
    assert recent_backup(backups, DATABASE, within, NOW) == "newest"
    assert recent_backup(backups, DATABASE, datetime.timedelta(minutes=30), NOW) is None


def test_the_pre_rollout_backup_is_named_by_generation_and_outlives_the_apideployment() -> None:
    spec = _spec(preDeploy={"backup": {"storage": {"volume": {"path": "/backups"}}}})
    name = backup_name("orion-api", 7)
    assert name == "orion-api-predeploy-g7"
    manifest = render_predeploy_backup(name, "shop", spec, owner=OWNER, revision=3)
    assert "ownerReferences" not in manifest["metadata"]
    assert manifest["metadata"]["labels"]["orion.io/apideployment"] == "orion-api"
    assert manifest["metadata"]["labels"]["orion.io/apideployment-uid"] == "uid-1"
    assert manifest["spec"]["deletionPolicy"] == "Retain"
    assert manifest["spec"]["type"] == "platform"
    assert manifest["spec"]["database"] == {
        "secretRef": {"name": "orion-database", "key": "DATABASE_URL"}
    }
    assert manifest["spec"]["storage"]["volume"]["path"] == "/backups"
    assert "executor" not in manifest["spec"]  # the operator's default
    assert backup_view(manifest).owner_uid == "uid-1"
    assert backup_view(None).phase is None


def test_the_migration_job_runs_the_command_in_the_new_image_with_the_pods_env() -> None:
    spec = _spec(
        env=SPEC.model_dump(mode="json")["env"],
        envFrom=[{"secretRef": {"name": "orion-api-secrets"}}],
        resources={"limits": {"memory": "512Mi"}},
        preDeploy={"migrations": {"activeDeadlineSeconds": 120}},
    )
    template = render_pod_template("orion-api", spec, "api:2")
    name = migration_job_name("orion-api", 4)
    job = render_migration_job(name, "shop", spec, owner=OWNER, revision=2, template=template)
    assert job["metadata"]["name"] == "orion-api-migrate-g4"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "orion-migrations"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "api:2"
    assert container["command"] == ["npx", "prisma", "migrate", "deploy"]
    api = template["spec"]["containers"][0]
    assert container["env"] == api["env"] and container["envFrom"] == api["envFrom"]
    assert "readinessProbe" not in container and "ports" not in container


def test_long_names_are_shortened_with_a_hash() -> None:
    name = migration_job_name("a" * 60, 12)
    assert len(name) <= 63 and name.endswith("-migrate-g12")


def test_merge_diffs_null_what_is_gone_and_leave_what_is_unchanged() -> None:
    current = {"a": 1, "nested": {"keep": 1, "drop": 2, "deep": {"x": 1}}, "list": [1, 2]}
    desired = {"a": 1, "nested": {"keep": 1, "deep": {"y": 2}}, "list": [1]}
    assert merge_diff(current, desired) == {
        "nested": {"drop": None, "deep": {"x": None, "y": 2}},
        "list": [1],
    }
    patch = with_merge_diffs(
        {"rollout": desired, "phase": "Healthy"}, {"rollout": current}, ["rollout"]
    )
    assert patch["rollout"] == merge_diff(current, desired) and patch["phase"] == "Healthy"
    assert with_merge_diffs({"rollout": current}, {"rollout": current}, ["rollout"]) == {}
