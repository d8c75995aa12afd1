"""Automatic rollback: from a bad release's first failing probe to the template being reverted.

Usage: KUBECONFIG=... .venv/bin/python bench/rollout.py [--runs 5] [--interval 2] [--failures 3]

On a cluster with the CRDs installed (`scripts/cluster up`), with a real PostgreSQL for the
triage that runs before a rollback, it starts the operator for one namespace and a local API
(tests/rollout_api.py) whose /health answers 500 for the bad images and ok for the good ones,
by the image in the Deployment's template. Each run releases a good image, waits until it is
stable, then releases a bad one and measures, from the probes the API answered and the template
changes a watch saw:

  - from the first failing probe to the Deployment's template being put back;
  - the failing probes answered until then, and the ones verification counted;
  - from the template change to the revert (it includes the Deploy gate, which kwok's pods pass
    within about a second).

Expected: verification fails at its `failureThreshold`-th bad probe, `interval` seconds apart,
so the revert comes about (failureThreshold - 1) * interval after the first probe verification
counts, plus one triage and one apply. Bad probes answered while the Deploy gate still waits
for the new pods are not counted by verification; they add whole intervals in front.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.rollout_api import ImageScriptedApi  # noqa: E402

from orion_operator.devenv.postgres import LocalPostgres  # noqa: E402

NAMESPACE = "orion-bench-rollout"
GOOD = "ghcr.io/example/orion-api:{}.0.0"
BAD = "ghcr.io/example/orion-api:{}.0.0-broken"


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["kubectl", *args], input=stdin, text=True, check=check, capture_output=True
    )
    return done.stdout


def release(image: str, api: ImageScriptedApi, interval: int, failures: int, db: bool) -> None:
    spec: dict[str, Any] = {
        "image": image,
        "replicas": 2,
        "healthCheck": {
            "url": api.url,
            "intervalSeconds": interval,
            "timeoutSeconds": 1,
            "failureThreshold": failures,
        },
        # A bad release never answers ok, so only the failure threshold ends its verification;
        # a short window keeps the good releases quick.
        "rollout": {"verifySeconds": interval},
        "dependencies": {"queues": []},
    }
    if not db:
        spec["dependencies"]["database"] = {"secretRef": {"name": "no-such-secret", "key": "x"}}
    manifest = {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "ApiDeployment",
        "metadata": {"name": "orion-api"},
        "spec": spec,
    }
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(manifest))


def status() -> dict[str, Any]:
    found = json.loads(kubectl("get", "apid", "orion-api", "-n", NAMESPACE, "-o", "json"))
    return dict(found.get("status") or {})


def wait(what: str, check: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status()
        if check(found):
            return found
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


@dataclass(frozen=True)
class Run:
    first_failure_to_revert: float
    change_to_revert: float
    bad_probes: int
    counted: int


def one_run(n: int, api: ImageScriptedApi, interval: int, failures: int, db: bool) -> Run:
    good, bad = GOOD.format(n), BAD.format(n)
    api.health[bad] = "500"
    release(good, api, interval, failures, db)
    wait(
        f"{good} to be stable",
        lambda s: (
            s.get("stableImage") == good
            and (s.get("rollout") or {}).get("result") in ("Succeeded",)
        ),
    )
    release(bad, api, interval, failures, db)
    done = wait(
        f"{bad} to be rolled back", lambda s: (s.get("rollout") or {}).get("result") == "RolledBack"
    )
    # The watch sees the revert a moment after the status says so.
    deadline = time.monotonic() + 10
    while api.image != good and time.monotonic() < deadline:
        time.sleep(0.05)
    to_bad = next(c for c in reversed(api.changes) if c.image == bad)
    reverted = next(c for c in api.changes if c.image == good and c.at > to_bad.at)
    failing = [p for p in api.probes if p.image == bad and to_bad.at <= p.at <= reverted.at]
    return Run(
        first_failure_to_revert=reverted.at - failing[0].at,
        change_to_revert=reverted.at - to_bad.at,
        bad_probes=len(failing),
        counted=int(done["rollout"]["verify"]["failures"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=int, default=2, help="healthCheck.intervalSeconds")
    parser.add_argument("--failures", type=int, default=3, help="healthCheck.failureThreshold")
    parser.add_argument(
        "--no-database", action="store_true", help="skip PostgreSQL: triage has nothing to check"
    )
    args = parser.parse_args()

    database = None if args.no_database else LocalPostgres().start()
    # An earlier run's namespace may still be going away.
    kubectl("wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=120s", check=False)
    kubectl("create", "namespace", NAMESPACE)
    operator = None
    try:
        if database is not None:
            password = secrets.token_hex(8)
            database.create_role("orion", password)
            database.create_database("orion", owner="orion")
            url = database.url_for("orion", "orion", password)
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "orion-database"},
                "stringData": {"DATABASE_URL": url},
            }
            kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(secret))
        operator = subprocess.Popen(
            [sys.executable, "-m", "orion_operator", "run", "--standalone", "-n", NAMESPACE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ORION_METRICS_PORT": "0"},
            cwd=REPO,
        )
        api = ImageScriptedApi(NAMESPACE)
        with api.running():
            runs = [
                one_run(n, api, args.interval, args.failures, database is not None)
                for n in range(1, args.runs + 1)
            ]
    finally:
        # While the operator still runs, so it can release its finalizer.
        kubectl("delete", "apid", "--all", "-n", NAMESPACE, "--timeout=60s", check=False)
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        if database is not None:
            database.stop()

    expected = (args.failures - 1) * args.interval
    print(
        f"bad release, healthCheck.intervalSeconds={args.interval}, "
        f"failureThreshold={args.failures}, {len(runs)} runs"
        + ("" if database is not None else " (no database: triage has nothing to check)")
    )
    for i, run in enumerate(runs, start=1):
        print(
            f"  run {i}: first failing probe → template reverted "
            f"{run.first_failure_to_revert:.2f} s, "
            f"{run.bad_probes} failing probes answered ({run.counted} counted by verification); "
            f"template change → revert {run.change_to_revert:.2f} s"
        )
    print(
        "  median: first failing probe → reverted "
        f"{statistics.median(r.first_failure_to_revert for r in runs):.2f} s, "
        f"failing probes {statistics.median(r.bad_probes for r in runs):g}, "
        f"counted {statistics.median(r.counted for r in runs):g}; "
        f"template change → reverted {statistics.median(r.change_to_revert for r in runs):.2f} s"
    )
    print(
        f"  expected from the thresholds: (failureThreshold - 1) * interval = {expected} s after "
        f"the first probe verification counts, {args.failures} probes counted"
    )


if __name__ == "__main__":
    main()
