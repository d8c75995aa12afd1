"""Scaling decisions: clamping to the bounds, and the connections a scale-up would need."""

from __future__ import annotations

import psycopg
import pytest

from orion_operator.api.crds import render_crds
from orion_operator.devenv.postgres import free_port
from orion_operator.rollout.connections import read_connection_usage
from orion_operator.rollout.scaling import ConnectionUsage, clamp_replicas, estimate_scale_up
from orion_operator.tenancy.errors import DatabaseUnavailable
from tests.conftest import AppDatabase


def test_replicas_within_the_bounds_are_kept() -> None:
    target = clamp_replicas(5, 1, 10)
    assert (target.replicas, target.clamped, target.reason) == (5, False, "WithinBounds")


def test_replicas_above_max_are_clamped_and_the_message_names_both_fields() -> None:
    target = clamp_replicas(15, 1, 10)
    assert (target.replicas, target.clamped, target.reason) == (10, True, "AboveMaxReplicas")
    assert target.message == (
        "spec.replicas 15 is above spec.maxReplicas 10: the Deployment runs 10"
    )


def test_replicas_below_min_are_raised_to_min() -> None:
    target = clamp_replicas(0, 2, 10)
    assert (target.replicas, target.reason) == (2, "BelowMinReplicas")
    assert "below spec.minReplicas 2" in target.message


def test_scale_to_zero_is_possible_when_min_is_zero() -> None:
    assert clamp_replicas(0, 0, 10).replicas == 0


def test_scale_up_adds_each_new_replicas_pool_to_what_is_in_use() -> None:
    usage = ConnectionUsage(in_use=30, max_connections=100)
    estimate = estimate_scale_up(
        usage, current_replicas=2, target_replicas=6, connections_per_replica=10, max_share=0.8
    )
    assert estimate is not None
    assert (estimate.projected, estimate.limit, estimate.over_limit) == (70, 80, False)

    bigger = estimate_scale_up(
        usage, current_replicas=2, target_replicas=8, connections_per_replica=10, max_share=0.8
    )
    assert bigger is not None and bigger.over_limit
    assert bigger.message == (
        "scaling from 2 to 8 replicas would use about 90 of 100 PostgreSQL connections "
        "(30 in use now), above the limit of 80"
    )


def test_no_estimate_when_not_scaling_up() -> None:
    usage = ConnectionUsage(in_use=95, max_connections=100)
    for target in (3, 2):
        assert (
            estimate_scale_up(
                usage,
                current_replicas=3,
                target_replicas=target,
                connections_per_replica=10,
                max_share=0.8,
            )
            is None
        )


def test_used_percent_rounds_and_tolerates_zero_max() -> None:
    assert ConnectionUsage(in_use=1, max_connections=3).used_percent == 33
    assert ConnectionUsage(in_use=0, max_connections=0).used_percent == 0


async def test_connection_use_is_read_from_pg_stat_activity(app_database: AppDatabase) -> None:
    before = await read_connection_usage(app_database.url)
    (max_connections,) = app_database.query("SELECT current_setting('max_connections')::int")[0]
    held = [psycopg.connect(app_database.url) for _ in range(3)]
    try:
        during = await read_connection_usage(app_database.url)
    finally:
        for connection in held:
            connection.close()
    assert before.max_connections == max_connections
    assert during.in_use - before.in_use == 3


async def test_an_unreachable_database_is_a_typed_error_without_the_password() -> None:
    url = f"postgresql://orion:s3cret-pw@127.0.0.1:{free_port()}/orion"
    with pytest.raises(DatabaseUnavailable) as raised:
        await read_connection_usage(url, connect_timeout_seconds=2)
    assert "s3cret-pw" not in raised.value.message


def test_crd_exposes_scale_and_rejects_min_above_max() -> None:
    crd = render_crds()["apideployments.orion.io.yaml"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {
        "rule": "self.minReplicas <= self.maxReplicas",
        "fieldPath": ".minReplicas",
    }.items() <= (spec["x-kubernetes-validations"][0].items())
    assert spec["required"] == ["image"]
    assert spec["properties"]["image"]["minLength"] == 1
    for field in ("replicas", "minReplicas"):
        assert spec["properties"][field]["minimum"] == 0
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Image", "Ready", "Desired", "Health", "Phase"]
    assert columns[-1] == "Age"
