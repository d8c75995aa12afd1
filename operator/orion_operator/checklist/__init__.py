"""The runbook's daily checklist (`kubectl orion status`), from objects: no client here."""

from orion_operator.checklist.lines import (
    CRITICAL_ALERT_REASONS,
    Checklist,
    ClusterState,
    Item,
    Line,
    LineStatus,
    Subject,
    Thresholds,
    build_checklist,
)
from orion_operator.checklist.render import checklist_json, render_text

__all__ = [
    "CRITICAL_ALERT_REASONS",
    "Checklist",
    "ClusterState",
    "Item",
    "Line",
    "LineStatus",
    "Subject",
    "Thresholds",
    "build_checklist",
    "checklist_json",
    "render_text",
]
