"""Chaos tests: the integration tests' real parts (control plane, PostgreSQL, Redis, S3, alert
receivers, an operator of the test's own that can be killed), plus a seeded random source.

Set ORION_CHAOS_SEED to replay a run: each test prints the seed it used.
"""

from __future__ import annotations

import os
import random
import secrets

import pytest

# The integration fixtures, shared rather than copied.
from tests.integration.conftest import alert_receivers, cluster  # noqa: F401
from tests.integration.test_backup_faults import (  # noqa: F401
    big_database,
    bucket,
    chaos_operator,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos" in str(item.path):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def chaos_random(request: pytest.FixtureRequest) -> random.Random:
    """A random source whose seed is printed, so a failing run can be replayed."""
    seed = int(os.environ.get("ORION_CHAOS_SEED") or secrets.randbits(32))
    print(f"chaos: {request.node.name}: ORION_CHAOS_SEED={seed}")
    request.node.user_properties.append(("chaos_seed", seed))
    return random.Random(seed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seeds = [
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for key, value in getattr(report, "user_properties", [])
        if key == "chaos_seed"
    ]
    for nodeid, seed in seeds:
        terminalreporter.write_line(f"chaos seed: {nodeid}: ORION_CHAOS_SEED={seed}")
