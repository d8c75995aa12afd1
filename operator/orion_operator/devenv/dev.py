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
from orion_operator.devenv.postgres import LocalPostgres, free_port
from orion_operator.devenv.redis import LocalRedis

APP_ROLE = "orion"
APP_DATABASE = "orion"
SAMPLE_API = "orion-api"


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _secret(namespace: str, name: str, key: str, value: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {key: value},
        }
    )


def _samples_ready(namespace: str) -> bool:
    tenants = kubectl(
        "wait",
        "--for=condition=Ready",
        "tenants",
        "--all",
        "-n",
        namespace,
        "--timeout=5s",
        check=False,
    )
    # Ready: the first rollout has passed its verification and the health probe says ok.
    api = kubectl(
        "wait",
        "--for=condition=Ready",
        f"apideployment/{SAMPLE_API}",
        "-n",
        namespace,
        "--timeout=5s",
        check=False,
    )
    return tenants.returncode == 0 and api.returncode == 0


def _wait_for_samples(namespace: str, operator: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and operator.poll() is None:
        if _samples_ready(namespace):
            return True
        time.sleep(1)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


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
        database_url = postgres.url_for(APP_DATABASE, APP_ROLE, password)

        _say("starting Redis")
        redis = LocalRedis(password=secrets.token_urlsafe(18)).start()
        cleanup.callback(redis.stop)
        cleanup.callback(_say, "stopping Redis")

        api_port = free_port()
        _say(f"starting the demo API (the /health contract) on 127.0.0.1:{api_port}")
        demo_api = subprocess.Popen(
            [sys.executable, "-m", "orion_operator", "demo-api", "--port", str(api_port)],
            env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis.url},
            stdout=sys.stderr,  # stdout carries only the final table
        )
        cleanup.callback(_stop, demo_api)

        _say("installing the CRDs and the samples")
        install_crds()
        if kubectl("get", "namespace", namespace, check=False).returncode != 0:
            kubectl("create", "namespace", namespace)
        for name, key, value in [
            ("orion-database", "DATABASE_URL", database_url),
            ("orion-redis", "REDIS_URL", redis.url),
        ]:
            kubectl("apply", "-f", "-", input=_secret(namespace, name, key, value))
        kubectl("apply", "-n", namespace, "-k", str(repo_path("manifests", "samples")))
        # The operator runs outside the cluster here, so it probes the demo API directly
        # instead of the Service it would use in a cluster.
        local_url = {"spec": {"healthCheck": {"url": f"http://127.0.0.1:{api_port}/health"}}}
        kubectl(
            "patch",
            "apideployment",
            SAMPLE_API,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps(local_url),
        )

        _say("running the operator (Ctrl-C stops everything)")
        operator = subprocess.Popen(
            [sys.executable, "-m", "orion_operator", "run", "--standalone", "-n", namespace],
            cwd=REPO_ROOT,
            env={**os.environ, "ORION_METRICS_PORT": os.environ.get("ORION_METRICS_PORT", "0")},
        )
        cleanup.callback(_stop, operator)
        ready = _wait_for_samples(namespace, operator, timeout=180)
        if not ready:
            _say("the samples did not become Ready; see the operator's log above and:")
        shown = kubectl("get", "tenants,apideployments", "-n", namespace, "-o", "wide")
        print(shown.stdout, flush=True)
        if once:
            return 0 if ready else 1
        _say(f"try: stop Redis (kill {redis.pid}) and watch `kubectl get apid -n {namespace} -w`")
        try:
            return operator.wait()
        except KeyboardInterrupt:
            return 0
    return 0
