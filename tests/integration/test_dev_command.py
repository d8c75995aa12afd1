"""The README's run command, end to end against the test cluster: samples become Ready."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from orion_operator.devenv.kubectl import REPO_ROOT, kubectl


def test_dev_applies_the_samples_and_shows_them_ready(cluster: str) -> None:
    namespace = f"orion-dev-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orion_operator", "dev", "--once", "-n", namespace],
            env={**os.environ, "KUBECONFIG": cluster},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
        # acme exists in the sample data with three users; globex is created by the operator.
        tenants = [row[:5] for row in rows if row[0].startswith("tenant.orion.io/")]
        assert tenants == [
            ["tenant.orion.io/acme", "acme", "pro", "Ready", "3"],
            ["tenant.orion.io/globex", "globex", "starter", "Ready", "0"],
        ]
        # The sample ApiDeployment probes the demo API, which checks the real PostgreSQL and Redis.
        api = next(row for row in rows if row[0] == "apideployment.orion.io/orion-api")
        assert api[4:8] == ["ok", "Healthy", "connected", "connected"]
        assert "stopping PostgreSQL" in done.stderr
        assert "stopping Redis" in done.stderr
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
