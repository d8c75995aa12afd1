"""The checklist as text for a terminal, or as JSON for scripts."""

from __future__ import annotations

from typing import Any

from orion_operator.checklist.lines import ITEM_TITLES, Checklist, Item, LineStatus

MARKS = {
    LineStatus.OK: ("✓", "OK", "\033[32m"),
    LineStatus.FAIL: ("✗", "FAIL", "\033[31m"),
    LineStatus.NOT_CONFIGURED: ("-", "NOT CONFIGURED", "\033[2m"),
    LineStatus.UNKNOWN: ("?", "UNKNOWN", "\033[33m"),
}
RESET = "\033[0m"
BOLD = "\033[1m"
JSON_VERSION = 1


def render_text(checklist: Checklist, *, scope: str, colour: bool) -> str:
    """Items in the runbook's order, one line per object; a mark and a word on each line."""
    width = max(len(word) for _, word, _ in MARKS.values())
    stamp = checklist.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [f"Daily checklist ({scope}) at {stamp}"]
    for item in Item:
        lines = [line for line in checklist.lines if line.item is item]
        if not lines:
            continue
        out.append("")
        out.append(f"{BOLD}{ITEM_TITLES[item]}{RESET}" if colour else ITEM_TITLES[item])
        for line in lines:
            mark, word, ansi = MARKS[line.status]
            label = f"{mark} {word:<{width}}"
            if colour:
                label = f"{ansi}{label}{RESET}"
            who = f"{line.subject}: " if line.subject else ""
            out.append(f"  {label}  {who}{line.reason}")
    failed = sum(line.status is LineStatus.FAIL for line in checklist.lines)
    out.append("")
    out.append("All green." if checklist.ok else f"{failed} line(s) need attention.")
    return "\n".join(out) + "\n"


def checklist_json(checklist: Checklist, *, namespace: str | None) -> dict[str, Any]:
    """Stable keys: `version`, `generatedAt`, `namespace` (null for all), `ok`, `lines`."""
    return {
        "version": JSON_VERSION,
        "generatedAt": checklist.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "namespace": namespace,
        "ok": checklist.ok,
        "lines": [
            {
                "item": line.item.value,
                "title": ITEM_TITLES[line.item],
                "status": line.status.value,
                "reason": line.reason,
                "object": (
                    {
                        "kind": line.subject.kind,
                        "namespace": line.subject.namespace,
                        "name": line.subject.name,
                    }
                    if line.subject
                    else None
                ),
                "details": dict(line.details),
            }
            for line in checklist.lines
        ],
    }
