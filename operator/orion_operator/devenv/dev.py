"""`orion-operator dev`: the whole thing on one machine, in the foreground, Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

from orion_operator.devenv.kubectl import REPO_ROOT, cluster, install_crds, kubectl, repo_path
from orion_operator.devenv.postgres import LocalPostgres

APP_ROLE = "orion"
APP_DATABASE = "orion"


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _database_secret(namespace: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "orion-database", "namespace": namespace},
            "stringData": {"DATABASE_URL": url},
        }
    )


def _wait_for_samples(namespace: str, operator: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and operator.poll() is None:
        done = kubectl(
            "wait",
            "--for=condition=Ready",
            "tenants",
            "--all",
            "-n",
            namespace,
            "--timeout=5s",
            check=False,
        )
        if done.returncode == 0:
            return True
    return False


def run_dev(namespace: str = "default", once: bool = False) -> int:
    with ExitStack() as cleanup:
        if os.environ.get("KUBECONFIG"):
            _say(f"using the cluster in KUBECONFIG={os.environ['KUBECONFIG']}")
        else:
            _say("bringing up the local control plane (scripts/cluster up)")
            cluster("up")
            cleanup.callback(cluster, "down")
            cleanup.callback(_say, "stopping the control plane")
            os.environ["KUBECONFIG"] = cluster("kubeconfig")

        _say("starting PostgreSQL with the sample Orion schema")
        postgres = LocalPostgres().start()
        cleanup.callback(postgres.stop)
        cleanup.callback(_say, "stopping PostgreSQL")
        password = secrets.token_urlsafe(18)
        postgres.create_role(APP_ROLE, password)
        postgres.create_database(APP_DATABASE, owner=APP_ROLE)
        for sql_file in ("orion_schema.sql", "orion_seed.sql"):
            postgres.psql_file(repo_path("tests", "fixtures", sql_file), APP_DATABASE, APP_ROLE)

        _say("installing the CRDs and the samples")
        install_crds()
        if kubectl("get", "namespace", namespace, check=False).returncode != 0:
            kubectl("create", "namespace", namespace)
        kubectl(
            "apply",
            "-f",
            "-",
            input=_database_secret(namespace, postgres.url_for(APP_DATABASE, APP_ROLE, password)),
        )
        kubectl("apply", "-n", namespace, "-f", str(repo_path("manifests", "samples")))

        _say("running the operator (Ctrl-C stops everything)")
        operator = subprocess.Popen(
            [sys.executable, "-m", "orion_operator", "run", "--standalone", "-n", namespace],
            cwd=REPO_ROOT,
        )

        def stop_operator() -> None:
            if operator.poll() is None:
                operator.send_signal(signal.SIGINT)
                try:
                    operator.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    operator.kill()

        cleanup.callback(stop_operator)
        if _wait_for_samples(namespace, operator, timeout=180):
            print(kubectl("get", "tenants", "-n", namespace).stdout, flush=True)
        else:
            _say("the samples did not become Ready; see the operator's log above and:")
            print(kubectl("get", "tenants", "-n", namespace, "-o", "wide").stdout, flush=True)
            if once:
                return 1
        if once:
            return 0
        try:
            return operator.wait()
        except KeyboardInterrupt:
            return 0
    return 0
