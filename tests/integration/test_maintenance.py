"""DatabaseMaintenance on the real control plane: an on-demand run, and apply-time validation."""

from __future__ import annotations

from typing import Any

from orion_operator.devenv.kubectl import kubectl
from tests.conftest import AppDatabase
from tests.integration.conftest import (
    OperatorProcess,
    apply,
    condition,
    database_secret,
    get_json,
    wait_for,
)

RUN_ANNOTATION = "maintenance.orion.io/run"


def maintenance(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orion.io/v1alpha1",
        "kind": "DatabaseMaintenance",
        "metadata": {"name": name},
        "spec": {"schedule": "0 3 * * *", **spec},
    }


def test_an_on_demand_run_deletes_old_rows_and_reports_in_status(
    operator: OperatorProcess, namespace: str, app_database: AppDatabase
):
    app_database.execute(
        """
        INSERT INTO "AuditLog" ("action", "createdAt")
        SELECT 'old', now() - interval '2 years' FROM generate_series(1, 2500)
        """
    )
    app_database.execute("""INSERT INTO "AuditLog" ("action") VALUES ('new')""")
    apply(database_secret(app_database.url), namespace)
    tasks = {
        "analyze": {},
        "vacuum": {"full": True, "window": {"start": "00:00", "end": "00:01"}},
        "retention": [
            {
                "table": "AuditLog",
                "timestampColumn": "createdAt",
                "olderThan": "365d",
                "batchSize": 1000,
            }
        ],
        "report": {"top": 3},
    }
    applied = apply(maintenance("nightly", tasks=tasks), namespace)
    assert applied.returncode == 0, applied.stderr
    scheduled = wait_for(
        lambda: (
            (o := get_json("dbm", "nightly", "-n", namespace)).get("status", {}).get("phase") and o
        ),
        what="the first status",
    )
    assert scheduled["status"]["phase"] == "Scheduled" and scheduled["status"]["nextRunTime"]

    kubectl("annotate", "dbm", "nightly", "-n", namespace, f"{RUN_ANNOTATION}=first")
    done = wait_for(
        lambda: (
            (o := get_json("dbm", "nightly", "-n", namespace))["status"].get("lastTrigger")
            == "first"
            and o
        ),
        timeout=60,
        what="the on-demand run",
    )
    status = done["status"]
    tasks_by_name = {t["name"]: t for t in status["lastRun"]["tasks"]}
    assert tasks_by_name["retention/AuditLog"]["result"] == "Succeeded"
    assert tasks_by_name["analyze"]["result"] == "Succeeded"
    assert tasks_by_name["report"]["result"] == "Succeeded"
    # The window is one minute at midnight UTC: the full vacuum is refused, the rest ran.
    assert tasks_by_name["vacuum"]["result"] == "Refused"
    assert tasks_by_name["vacuum"]["reason"] == "OutsideWindow"
    assert status["lastRun"]["retention"] == [{"table": "AuditLog", "deleted": 2500, "batches": 3}]
    assert app_database.query('SELECT "action" FROM "AuditLog"') == [("new",)]
    report = status["lastRun"]["report"]
    assert len(report["tables"]) == 3 and report["tables"][0]["totalBytes"] > 0
    assert report["tables"][0]["total"].endswith(("bytes", "kB", "MB"))
    assert report["connections"]["max"] > 0
    assert status["phase"] == "Failed"
    ready = condition(done)
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "TasksFailed"
    assert "vacuum refused" in ready["message"]
    events = get_json("events", "-n", namespace)["items"]
    assert any(e["reason"] == "MaintenanceFailed" for e in events)

    # Without the full vacuum the next on-demand run succeeds.
    tasks["vacuum"] = {"tables": ["AuditLog"]}
    apply(maintenance("nightly", tasks=tasks), namespace)
    kubectl(
        "annotate", "dbm", "nightly", "-n", namespace, f"{RUN_ANNOTATION}=second", "--overwrite"
    )
    again = wait_for(
        lambda: (
            (o := get_json("dbm", "nightly", "-n", namespace))["status"].get("lastTrigger")
            == "second"
            and o
        ),
        timeout=60,
        what="the second run",
    )
    assert again["status"]["phase"] == "Succeeded"
    assert condition(again)["status"] == "True"  # type: ignore[index]
    assert again["status"]["lastRun"]["retention"][0]["deleted"] == 0
    printed = kubectl("get", "dbm", "nightly", "-n", namespace).stdout
    assert "0 3 * * *" in printed and "Succeeded" in printed


def test_bad_input_is_rejected_at_apply_time_naming_the_field(
    operator: OperatorProcess, namespace: str
):
    rule = {"table": "AuditLog", "timestampColumn": "createdAt", "olderThan": "365d"}
    cases = [
        (
            maintenance("a", tasks={"retention": [{**rule, "olderThan": "a year"}]}),
            "spec.tasks.retention[0].olderThan",
        ),
        (
            maintenance("b", tasks={"retention": [{**rule, "batchSize": 0}]}),
            "spec.tasks.retention[0].batchSize",
        ),
        (
            maintenance(
                "c", tasks={"vacuum": {"full": True, "window": {"start": "04:00", "end": "02:00"}}}
            ),
            "window end must be after start",
        ),
        (maintenance("d", tasks={"vacuum": {"full": True}}), "full: true needs a window"),
        (
            maintenance("e", tasks={"retention": [{**rule, "olderThan": "0d"}]}),
            "olderThan must be more than zero",
        ),
        (maintenance("f", schedule="every night"), "spec.schedule"),
        (
            maintenance("g", tasks={"vacuum": {"window": {"start": "25:00", "end": "26:00"}}}),
            "spec.tasks.vacuum.window.start",
        ),
    ]
    for manifest, field in cases:
        result = apply(manifest, namespace)
        assert result.returncode != 0, f"{manifest['metadata']['name']} was accepted"
        assert field in result.stderr, result.stderr
