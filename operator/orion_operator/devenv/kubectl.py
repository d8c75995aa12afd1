"""Running kubectl and the repository's cluster script, for `dev` and the tests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def repo_path(*parts: str) -> Path:
    path = REPO_ROOT.joinpath(*parts)
    if not path.exists():
        raise RuntimeError(f"{path} not found: `orion-operator dev` runs from a source checkout")
    return path


def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """kubectl against $KUBECONFIG; output captured as text."""
    return subprocess.run(
        ["kubectl", *args],
        input=input,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def cluster(command: str) -> str:
    """`scripts/cluster <command>` (up, down, kubeconfig); returns its stdout, stripped."""
    script = repo_path("scripts", "cluster")
    done = subprocess.run(
        [str(script), command], stdout=subprocess.PIPE, text=True, check=True, env=os.environ.copy()
    )
    return done.stdout.strip()


def install_crds(timeout_seconds: float = 60) -> None:
    """Apply the CRDs and their admission policies; wait until discovery serves the CRDs."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(repo_path("crds")))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(repo_path("admission")))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(repo_path("crds")))
    # Discovery lags Established by a moment; `kubectl get orion` fails until it catches up.
    deadline = time.monotonic() + timeout_seconds
    while kubectl("get", "orion", "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the orion CRDs are Established but discovery does not serve them")
        time.sleep(0.5)
