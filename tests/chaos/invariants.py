"""What must hold after any fault, in one place: every scenario ends by calling these.

- Every Orion object settles: a terminal or steady phase, and a Ready condition with a reason.
- No Backup is Completed without a complete artifact: it exists, its sha256 and size match the
  status and the manifest, and the archive reads back (`pg_restore --list`, or the tenant ZIP's
  CSVs hold `rowCounts` rows).
- No tenant's rows are deleted without a Completed final Backup holding them.
- No duplicates: one Job per owner and revision, one Backup per schedule slot, per rollout
  revision and per Tenant deletion.
- Alerts: none lost (each webhook alert also came by e-mail), none sent twice for one transition.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import subprocess
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from orion_operator.devenv.postgres import find_bindir
from tests.conftest import AppDatabase
from tests.integration.conftest import AlertReceivers, condition, get_json, wait_for
from tests.s3_server import s3_client

WEBHOOK = "/orion-alerts"
# Phases an object may rest in once the operator is done with it (or watching it steadily).
SETTLED = {
    "backups": {"Completed", "Failed"},
    "restores": {"Completed", "Failed"},
    "tenants": {"Ready", "Suspended", "Error"},
    "backupschedules": {"Active", "Suspended", "Error"},
    "apideployments": {"Healthy", "Degraded", "Error", "Down", "Blocked", "Failed"},
}
FINAL_BACKUP_LABEL = "orion.io/final-backup-of"
SCHEDULE_LABEL = "orion.io/backup-schedule"
SCHEDULED_TIME = "orion.io/scheduled-time"
APIDEPLOYMENT_LABEL = "orion.io/apideployment"
REVISION_LABEL = "orion.io/revision"


# --- settled -----------------------------------------------------------------------------------


def _unsettled(namespace: str) -> list[str]:
    found = []
    for kind, phases in SETTLED.items():
        for obj in get_json(kind, "-n", namespace)["items"]:
            if obj["metadata"].get("deletionTimestamp"):
                found.append(f"{kind}/{obj['metadata']['name']} is still being deleted")
                continue
            phase = (obj.get("status") or {}).get("phase")
            ready = condition(obj)
            if phase not in phases or ready is None or not ready.get("reason"):
                found.append(f"{kind}/{obj['metadata']['name']} phase={phase} Ready={ready}")
    return found


def wait_settled(namespace: str, timeout: float = 180) -> None:
    """Every Orion object in `namespace` reaches a settled phase with a Ready reason."""
    last: list[str] = []

    def settled() -> bool:
        last[:] = _unsettled(namespace)
        return not last

    try:
        wait_for(settled, timeout, "every object to settle")
    except AssertionError as error:
        raise AssertionError(f"{error}: {last}") from None


# --- artifacts ---------------------------------------------------------------------------------


def _read_location(uri: str, spec: dict[str, Any]) -> bytes:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).read_bytes()
    s3 = spec["storage"]["s3"]
    key = uri.removeprefix(f"s3://{s3['bucket']}/")
    client = s3_client(s3["endpoint"])
    return bytes(client.get_object(Bucket=s3["bucket"], Key=key)["Body"].read())


def _csv_rows(archive: zipfile.ZipFile, member: str) -> int:
    with archive.open(member) as handle:
        return sum(1 for _ in csv.reader(io.TextIOWrapper(handle, encoding="utf-8"))) - 1


def assert_artifact_complete(backup: dict[str, Any]) -> None:
    """The Completed Backup's artifact is there, whole, and reads back as what it claims."""
    name, status, spec = backup["metadata"]["name"], backup["status"], backup["spec"]
    data = _read_location(status["location"], spec)
    assert hashlib.sha256(data).hexdigest() == status["sha256"], f"{name}: sha256 differs"
    assert len(data) == status["sizeBytes"], f"{name}: size differs"
    manifest = json.loads(_read_location(status["manifest"], spec))
    assert manifest["sha256"] == status["sha256"] and manifest["runId"] == backup["metadata"]["uid"]
    if spec.get("type", "platform") == "tenant":
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert archive.testzip() is None, f"{name}: a ZIP member is corrupt"
        counts = {m.removesuffix(".csv"): _csv_rows(archive, m) for m in archive.namelist()}
        for table, rows in (status.get("rowCounts") or {}).items():
            assert counts.get(table) == rows, f"{name}: {table}.csv has {counts.get(table)} rows"
    elif spec.get("format", "custom") == "custom":
        with tempfile.NamedTemporaryFile(suffix=".dump") as handle:
            handle.write(data)
            handle.flush()
            listed = subprocess.run(
                [str(find_bindir() / "pg_restore"), "--list", handle.name],
                capture_output=True,
                text=True,
            )
        assert listed.returncode == 0, f"{name}: pg_restore --list refused it: {listed.stderr}"
        assert "TABLE DATA" in listed.stdout, f"{name}: the archive holds no table data"
    else:
        assert b"PostgreSQL database dump complete" in data[-512:], f"{name}: plain dump cut short"


def assert_backups_sound(namespace: str) -> list[dict[str, Any]]:
    """Every Completed Backup has a complete artifact; every Failed one says why."""
    backups = get_json("backups", "-n", namespace)["items"]
    for backup in backups:
        status = backup.get("status") or {}
        if status.get("phase") == "Completed":
            assert_artifact_complete(backup)
        elif status.get("phase") == "Failed":
            ready = condition(backup)
            assert ready is not None and ready["reason"] and status.get("message"), status
    return backups


# --- tenant data -------------------------------------------------------------------------------


def tenant_row_counts(db: AppDatabase, tenant_id: str, tables: Iterable[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        rows = db.query(f'SELECT count(*) FROM "{table}" WHERE "tenantId" = %s', (tenant_id,))
        counts[table] = int(str(rows[0][0]))
    return counts


def assert_tenant_data_deleted_only_after_backup(
    db: AppDatabase, namespace: str, tenant: str, before: dict[str, int]
) -> dict[str, Any] | None:
    """If any of `tenant`'s rows are gone, one Completed final Backup holds all of them
    (`before`: its row counts before the deletion started), and it completed before the
    TenantDataDeleted Event. Returns that Backup, or None when nothing was deleted."""
    now = tenant_row_counts(db, tenant, before)
    finals = get_json("backups", "-n", namespace, "-l", f"{FINAL_BACKUP_LABEL}={tenant}")["items"]
    assert len(finals) <= 1, f"{len(finals)} final Backups of {tenant}"
    if now == before:
        return finals[0] if finals else None
    assert finals, f"rows of {tenant} were deleted ({before} -> {now}) without a final Backup"
    final = finals[0]
    assert final["status"]["phase"] == "Completed", final["status"]
    assert final["status"]["rowCounts"] == before, "the final Backup does not hold every row"
    assert_artifact_complete(final)
    deleted = [
        e
        for e in get_json("events", "-n", namespace)["items"]
        if e["reason"] == "TenantDataDeleted" and e["involvedObject"]["name"] == tenant
    ]
    completed = _time(final["status"]["completedAt"])
    for event in deleted:
        when = _time(event.get("lastTimestamp") or event["eventTime"])
        # Event times may be whole seconds: compare at that precision.
        assert completed.replace(microsecond=0) <= when, "rows deleted before the backup completed"
    return final


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- duplicates --------------------------------------------------------------------------------


def assert_no_duplicates(namespace: str) -> None:
    jobs = get_json("jobs", "-n", namespace)["items"]
    by_owner: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        owners = job["metadata"].get("ownerReferences") or [{"uid": "none"}]
        revision = job["metadata"].get("labels", {}).get(REVISION_LABEL, "")
        by_owner[(owners[0]["uid"], revision)] += 1
    assert all(n == 1 for n in by_owner.values()), f"duplicate Jobs: {by_owner}"

    slots: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for backup in get_json("backups", "-n", namespace)["items"]:
        meta = backup["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if SCHEDULE_LABEL in labels:
            slots[("schedule", labels[SCHEDULE_LABEL], annotations.get(SCHEDULED_TIME, ""))].append(
                meta["name"]
            )
        if FINAL_BACKUP_LABEL in labels:
            slots[("final", labels[FINAL_BACKUP_LABEL])].append(meta["name"])
        if APIDEPLOYMENT_LABEL in labels:
            slots[("rollout", labels[APIDEPLOYMENT_LABEL], labels.get(REVISION_LABEL, ""))].append(
                meta["name"]
            )
    duplicates = {slot: names for slot, names in slots.items() if len(names) > 1}
    assert not duplicates, f"duplicate Backups: {duplicates}"


# --- alerts ------------------------------------------------------------------------------------


def alerts_about(receivers: AlertReceivers, namespace: str) -> list[dict[str, Any]]:
    """Webhook alerts about `namespace`, in arrival order, signatures verified."""
    verifier = Webhook(receivers.webhook_secret)
    return [
        verifier.verify(r.body, r.headers)
        for r in receivers.http.to(WEBHOOK)
        # Others' alerts are skipped unverified: the check refuses timestamps over 5 min old.
        if json.loads(r.body)["object"]["namespace"] == namespace
    ]


def transitions(receivers: AlertReceivers, namespace: str) -> list[tuple[str, str, str, str]]:
    return [
        (p["object"]["name"], p["check"], p["reason"], p["transition"])
        for p in alerts_about(receivers, namespace)
    ]


# Alerts about one run, with no recovery to follow: counted by assert_backup_alerts.
ONE_SHOT_CHECKS = ("backup", "tenant-deletion")


def firing_checks(receivers: AlertReceivers, namespace: str) -> tuple[set[str], set[str]]:
    """(checks that fired, checks that fired and have not recovered since)."""
    fired: set[str] = set()
    open_: set[str] = set()
    for _, check, _, transition in transitions(receivers, namespace):
        if check in ONE_SHOT_CHECKS:
            continue
        if transition == "firing":
            fired.add(check)
            open_.add(check)
        elif transition == "resolved":
            open_.discard(check)
    return fired, open_


def assert_alerts_once_per_transition(receivers: AlertReceivers, namespace: str) -> None:
    """Each alert is delivered once per channel, and a check never fires again before it was
    resolved (a reminder is a `repeat`, not a second `firing`)."""
    payloads = alerts_about(receivers, namespace)
    ids = Counter(p["id"] for p in payloads)
    assert all(n == 1 for n in ids.values()), f"an alert was delivered twice: {ids}"
    firing: dict[tuple[str, str, str], bool] = {}
    for p in payloads:
        key = (p["object"]["kind"], p["object"]["name"], p["check"])
        if p["check"] in ONE_SHOT_CHECKS:
            continue
        if p["transition"] == "firing":
            assert not firing.get(key), f"{key} fired twice without a recovery: {payloads}"
            firing[key] = True
        elif p["transition"] == "resolved":
            assert firing.get(key), f"{key} recovered without having fired: {payloads}"
            firing[key] = False

    # No alert lost on the way: each came by e-mail too (sent concurrently, so wait a little).
    def mails() -> list[str]:
        return [
            str(m.message["Subject"])
            for m in receivers.smtp.messages
            if f" {namespace}/" in str(m.message["Subject"])
        ]

    wait_for(lambda: len(mails()) >= len(payloads), 30, "every alert's e-mail")
    assert len(mails()) == len(payloads), f"e-mails {mails()} for alerts {payloads}"


def assert_backup_alerts(receivers: AlertReceivers, namespace: str) -> None:
    """One critical BackupFailed alert per Failed Backup, none for a Completed one."""
    expected = sorted(
        b["metadata"]["name"]
        for b in get_json("backups", "-n", namespace)["items"]
        if (b.get("status") or {}).get("phase") == "Failed"
    )

    def sent() -> list[str]:
        return sorted(
            p["object"]["name"]
            for p in alerts_about(receivers, namespace)
            if p["reason"] == "BackupFailed"
        )

    wait_for(lambda: len(sent()) >= len(expected), 30, "the BackupFailed alerts")
    assert sent() == expected


def assert_invariants(receivers: AlertReceivers, namespace: str, timeout: float = 180) -> None:
    """Everything above that holds for any namespace, once its objects have settled."""
    wait_settled(namespace, timeout)
    assert_backups_sound(namespace)
    assert_no_duplicates(namespace)
    assert_backup_alerts(receivers, namespace)
    assert_alerts_once_per_transition(receivers, namespace)
