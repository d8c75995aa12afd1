"""The runbook's monitoring end to end: probe, classify, triage, alert once per transition."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from standardwebhooks import Webhook

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.health_server import ScriptedHealthServer
from tests.integration.conftest import (
    AlertReceivers,
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    wait_for,
)

WEBHOOK = "/orion-alerts"


def api_deployment(name: str, url: str, **alerts: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "ApiDeployment",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/example/orion-api:1.0.0",
            "healthCheck": {
                "url": url,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "failureThreshold": 2,
                "successThreshold": 2,
            },
            "alerts": {"repeatInterval": "1h", **alerts},
        },
    }


def ours(receivers: AlertReceivers, namespace: str) -> list[dict[str, Any]]:
    """Webhook payloads about this test's namespace, in arrival order, signatures verified."""
    verifier = Webhook(receivers.webhook_secret)
    payloads = []
    for request in receivers.http.to(WEBHOOK):
        # Others' alerts are skipped unverified: the check refuses timestamps over 5 minutes old.
        if json.loads(request.body)["object"]["namespace"] == namespace:
            payloads.append(verifier.verify(request.body, request.headers))
    return payloads


def sequence(receivers: AlertReceivers, namespace: str) -> list[tuple[str, str, str]]:
    return [(p["check"], p["reason"], p["transition"]) for p in ours(receivers, namespace)]


def health_state(name: str, namespace: str) -> str | None:
    return get_json("apid", name, "-n", namespace).get("status", {}).get("health", {}).get("state")


def test_health_transitions_alert_once_on_every_channel_and_recover(
    operator: OperatorProcess,
    alert_receivers: AlertReceivers,
    namespace: str,
    app_database: AppDatabase,
):
    apply(database_secret(app_database.url), namespace)
    server = ScriptedHealthServer()
    with server.running():
        applied = apply(api_deployment("orion-api", server.url), namespace)
        assert applied.returncode == 0, applied.stderr

        # ok: classified, detailed, Ready (its Deployment available too), no alert.
        wait_for(lambda: health_state("orion-api", namespace) == "ok", what="health ok")
        wait_for(
            lambda: condition(get_json("apid", "orion-api", "-n", namespace))["status"] == "True",
            what="Ready",
        )
        obj = get_json("apid", "orion-api", "-n", namespace)
        assert obj["status"]["phase"] == "Healthy"
        assert condition(obj)["status"] == "True"
        assert obj["status"]["health"]["queues"]["dian"] == {
            "status": "connected",
            "waiting": 0,
            "active": 0,
            "failed": 0,
        }
        table = kubectl("get", "apideployments", "-n", namespace, "-o", "wide").stdout.splitlines()
        assert table[0].split()[4:8] == ["HEALTH", "PHASE", "DATABASE", "REDIS"]
        assert table[1].split()[4:8] == ["ok", "Healthy", "connected", "connected"]

        # degraded (Redis disconnected): one warning after two bad probes, then a repeat only
        # once the repeat interval has passed.
        kubectl(
            "patch",
            "apid",
            "orion-api",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"alerts": {"repeatInterval": "3s"}}}),
        )
        server.mode = "degraded"
        wait_for(
            lambda: len(ours(alert_receivers, namespace)) >= 2,
            timeout=30,
            what="the RedisDown alert and its repeat",
        )
        kubectl(
            "patch",
            "apid",
            "orion-api",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"alerts": {"repeatInterval": "1h"}}}),
        )
        first, repeat = ours(alert_receivers, namespace)[:2]
        assert (first["reason"], first["severity"], first["transition"]) == (
            "RedisDown",
            "warning",
            "firing",
        )
        assert repeat["transition"] == "repeat"
        gap = _when(repeat) - _when(first)
        assert gap >= 3, f"repeated after {gap:.1f}s, before the 3s repeat interval"
        degraded = get_json("apid", "orion-api", "-n", namespace)
        assert degraded["status"]["phase"] == "Degraded"
        assert degraded["status"]["alerts"]["redis"]["firing"] is True

        # back to ok: one recovery.
        server.mode = "ok"
        wait_for(
            lambda: (
                sequence(alert_receivers, namespace)[-1:] == [("redis", "Recovered", "resolved")]
            ),
            timeout=30,
            what="the redis recovery alert",
        )

        # error (database disconnected): critical; triage checks the real PostgreSQL itself.
        server.mode = "error"
        wait_for(
            lambda: ("database", "DatabaseDown", "firing") in sequence(alert_receivers, namespace),
            timeout=30,
            what="DatabaseDown",
        )
        critical = [p for p in ours(alert_receivers, namespace) if p["reason"] == "DatabaseDown"]
        assert critical[0]["severity"] == "critical"
        triage = get_json("apid", "orion-api", "-n", namespace)["status"]["health"]["triage"]
        assert "database up" in triage["summary"]

        # hangs past the timeout, then answers 500: the API is down (one alert), then recovers.
        server.mode = "hang"
        wait_for(lambda: health_state("orion-api", namespace) == "down", what="health down")
        server.mode = "500"
        wait_for(
            lambda: ("api", "ApiDown", "firing") in sequence(alert_receivers, namespace),
            timeout=30,
            what="ApiDown",
        )
        server.mode = "ok"
        wait_for(
            lambda: ("api", "Recovered", "resolved") in sequence(alert_receivers, namespace),
            timeout=30,
            what="the API recovery alert",
        )

    assert sequence(alert_receivers, namespace) == [
        ("redis", "RedisDown", "firing"),
        ("redis", "RedisDown", "repeat"),
        ("redis", "Recovered", "resolved"),
        ("database", "DatabaseDown", "firing"),
        ("api", "ApiDown", "firing"),
        ("database", "Recovered", "resolved"),
        ("api", "Recovered", "resolved"),
    ]
    # The same alerts, once each, by e-mail and on Slack.
    ids = [p["id"] for p in ours(alert_receivers, namespace)]
    mails = [m for m in alert_receivers.smtp.messages if namespace in m.message["Subject"]]
    assert len(mails) == len(ids)
    assert all(m.over_tls and m.login == "alerts@orion.test" for m in mails)
    assert mails[0].message["Subject"].startswith("[WARNING] RedisDown: ApiDeployment")
    slack = [
        r
        for r in alert_receivers.http.to(alert_receivers.slack_path)
        if namespace in r.body.decode()
    ]
    assert len(slack) == len(ids)
    # And as Events on the object.
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    for reason in ("RedisDown", "DatabaseDown", "ApiDown", "Recovered"):
        assert f'"reason": "{reason}"' in events

    # Metrics say what happened.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics").read()
    text = metrics.decode()
    assert (
        f'orion_health_probe_state{{apideployment="orion-api",namespace="{namespace}",'
        f'state="ok"}} 1.0'
    ) in text
    assert 'orion_alerts_sent_total{channel="webhook",severity="critical"}' in text

    # No secret anywhere a person or a log shipper would see it.
    status = json.dumps(get_json("apid", "orion-api", "-n", namespace))
    bodies = "".join(r.body.decode() for r in alert_receivers.http.receiver.requests)
    mail_text = "".join(m.message.as_string() for m in mails)
    for secret in (
        alert_receivers.smtp_password,
        alert_receivers.webhook_secret,
        alert_receivers.slack_path,
        app_database.password,
    ):
        for place, text in [
            ("status", status),
            ("events", events),
            ("log", operator.log()),
            ("alert bodies", bodies),
            ("e-mail", mail_text),
        ]:
            assert secret not in text, f"a secret leaked into the {place}"
    operator.assert_running()


def _when(payload: dict[str, Any]) -> float:
    import datetime

    return datetime.datetime.fromisoformat(payload["occurredAt"]).timestamp()


def test_operator_serves_liveness_and_metrics(operator: OperatorProcess) -> None:
    live = urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/healthz")
    assert live.status == 200
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics").read()
    for name in (
        "orion_health_probe_duration_seconds",
        "orion_alerts_sent_total",
        "orion_reconcile_total",
        "orion_reconcile_duration_seconds",
    ):
        assert f"# TYPE {name}" in metrics.decode()
