"""The two readers of an Orion object's status that GitOps tools use, for the tests.

`kstatus` follows the rules of sigs.k8s.io/cli-utils' kstatus for a custom resource (what Flux
and `kstatus`-based waits compute); `argo_health` runs the Argo CD health check shipped under
docs/argocd/ in Lua 5.1, the Lua Argo CD runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lupa.lua51 as lua

ARGOCD_CHECKS = Path(__file__).resolve().parents[1] / "docs" / "argocd"
GROUP = "orion.io"

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def kstatus(obj: Mapping[str, Any]) -> str:
    """kstatus' result for a custom resource, in its order of checks."""
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return TERMINATING
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed is not None and observed != metadata.get("generation"):
        return IN_PROGRESS
    for condition in _conditions(obj):
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return IN_PROGRESS
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return FAILED
    for condition in _conditions(obj):
        if condition.get("type") == "Ready":
            return CURRENT if condition.get("status") == "True" else IN_PROGRESS
    # No known condition at all: kstatus takes the object as it is.
    return CURRENT


def health_script(kind: str) -> Path:
    """The script Argo CD runs for `kind`: one for all of them (see render-argocd-cm)."""
    return ARGOCD_CHECKS / "health.lua"


@functools.cache
def _source(kind: str) -> str:
    return health_script(kind).read_text()


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, Mapping):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argo_health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) of the Argo CD health check for the object's kind."""
    runtime = lua.LuaRuntime()
    # As Argo CD does: the object as the global `obj`, the script run as a chunk.
    runtime.globals().obj = _to_lua(runtime, dict(obj))
    result = runtime.execute(_source(str(obj["kind"])))
    return str(result["status"]), str(result["message"] or "")
