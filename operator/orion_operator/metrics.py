"""The operator's own Prometheus metrics; every metric is defined here and only here."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

probe_state = Gauge(
    "orion_health_probe_state",
    "1 for the state the last /health probe found, 0 for the others",
    ["namespace", "apideployment", "state"],
)
service_up = Gauge(
    "orion_health_service_up",
    "1 when the last probe or triage found the service up (database, redis, queue/<name>)",
    ["namespace", "apideployment", "service"],
)
probe_duration_seconds = Histogram(
    "orion_health_probe_duration_seconds",
    "Time a /health probe took, timeouts included",
    ["namespace", "apideployment"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
probe_delay_seconds = Histogram(
    "orion_health_probe_delay_seconds",
    "How late a probe started against its schedule",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
alerts_sent_total = Counter(
    "orion_alerts_sent_total", "Alerts delivered, per channel and severity", ["channel", "severity"]
)
alerts_failed_total = Counter(
    "orion_alerts_failed_total",
    "Alerts a channel could not deliver after its retries",
    ["channel", "severity"],
)
reconcile_total = Counter(
    "orion_reconcile_total", "Reconciliations per kind and outcome", ["kind", "outcome"]
)
reconcile_duration_seconds = Histogram(
    "orion_reconcile_duration_seconds", "Reconciliation time per kind", ["kind"]
)
# `schedule` is the BackupSchedule that made the Backup; empty for Backups made by hand.
BACKUP_LABELS = ["namespace", "type", "schedule"]
backup_last_success_timestamp_seconds = Gauge(
    "orion_backup_last_success_timestamp_seconds",
    "When the last backup of this kind (and schedule) completed (Unix time)",
    BACKUP_LABELS,
)
backup_duration_seconds = Histogram(
    "orion_backup_duration_seconds",
    "Backup run time",
    BACKUP_LABELS,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
backup_size_bytes = Gauge(
    "orion_backup_size_bytes", "Size of the last completed backup", BACKUP_LABELS
)
backups_failed_total = Counter("orion_backups_failed_total", "Failed backups", BACKUP_LABELS)
