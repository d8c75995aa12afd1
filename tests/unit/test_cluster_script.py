"""`scripts/cluster ... --kind` on a machine without Docker or kind: a clear refusal, and the
local control plane (its cache, clusters and lock) left exactly as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster"
# What the script needs before it reaches the --kind checks; docker and kind are left out.
BASE_TOOLS = ("bash", "env", "dirname", "awk", "sed", "grep", "cat", "date", "mkdir", "rm", "tr")


def _bin_dir(tmp_path: Path, fakes: dict[str, str] | None = None) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASE_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run scripts/cluster"
        (bin_dir / tool).symlink_to(found)
    for name, body in (fakes or {}).items():
        fake = bin_dir / name
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(0o755)
    return bin_dir


def _local_control_plane(cache: Path, cluster: str) -> dict[str, tuple[bytes, int]]:
    """A cache with a cluster of the local control plane in it; returns its snapshot."""
    cluster_dir = cache / "kwok" / "clusters" / cluster
    (cluster_dir / "pids").mkdir(parents=True)
    (cluster_dir / "kwok.yaml").write_text("kind: KwokctlConfiguration\n")
    (cluster_dir / "kubeconfig.yaml").write_text("apiVersion: v1\nkind: Config\n")
    (cluster_dir / "pids" / "etcd.pid").write_text("999999\n")
    return _snapshot(cache)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (
            path.read_bytes() if path.is_file() else b"",
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
    }


def _run(
    args: list[str], bin_dir: Path, cache: Path, cluster: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(bin_dir),
        "HOME": str(cache.parent),
        "ORION_CACHE_DIR": str(cache),
        "ORION_CLUSTER_NAME": cluster,
    }
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", ["up", "down"])
def test_kind_without_docker_or_kind_fails_clearly_and_leaves_the_local_cluster(
    tmp_path: Path, command: str
) -> None:
    cache = tmp_path / "cache"
    before = _local_control_plane(cache, "docs-test")

    result = _run([command, "--kind"], _bin_dir(tmp_path), cache, "docs-test")

    assert result.returncode == 1
    assert "--kind needs" in result.stderr
    assert "kind" in result.stderr.split("--kind needs", 1)[1]
    if command == "up":
        assert "missing: docker kind" in result.stderr
        assert "scripts/cluster up" in result.stderr  # what to run instead
    assert _snapshot(cache) == before  # no lock file, no kind kubeconfig, nothing deleted


def test_kind_up_with_docker_but_no_engine_says_the_engine_does_not_answer(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    before = _local_control_plane(cache, "docs-test")
    calls = tmp_path / "calls"
    fakes = {
        # A client without a daemon: every command fails, as `docker info` does then.
        "docker": f'echo "docker $*" >> {calls}; exit 1',
        "kind": f'echo "kind $*" >> {calls}; exit 0',
    }

    result = _run(["up", "--kind"], _bin_dir(tmp_path, fakes), cache, "docs-test")

    assert result.returncode == 1
    assert "docker is on PATH but its engine does not answer" in result.stderr
    # It stopped at the check: no cluster created, no image built.
    assert calls.read_text().splitlines() == ["docker info"]
    assert _snapshot(cache) == before


def test_kind_commands_are_listed_in_the_help(tmp_path: Path) -> None:
    result = _run(["help"], _bin_dir(tmp_path), tmp_path / "cache", "docs-test")
    assert "up --kind" in result.stderr
    assert "down --kind" in result.stderr
    assert not (tmp_path / "cache").exists()
    assert os.access(SCRIPT, os.X_OK)


def _helm_version() -> str:
    for line in (REPO / "tools" / "helm" / "go.mod").read_text().splitlines():
        words = line.split()
        if "helm.sh/helm/v3" in words:
            return words[words.index("helm.sh/helm/v3") + 1]
    raise AssertionError("helm.sh/helm/v3 is not pinned in tools/helm/go.mod")


def test_kind_up_creates_the_cluster_loads_the_image_and_installs_the_chart(
    tmp_path: Path,
) -> None:
    """docker, kind and helm are stand-ins that record their arguments (no Docker engine here)."""
    cache = tmp_path / "cache"
    _local_control_plane(cache, "docs-test")
    calls = tmp_path / "calls"
    record = f'echo "$(basename "$0") $*" >> {calls}'
    fakes = {
        "docker": f"{record}; exit 0",
        # `kind create cluster --kubeconfig PATH` writes that file, as kind does.
        "kind": f"""{record}
if [ "$1 $2" = "create cluster" ]; then
  while [ $# -gt 0 ]; do [ "$1" = --kubeconfig ] && echo "kind: Config" > "$2"; shift; done
fi
exit 0""",
        "basename": 'echo "${1##*/}"',
    }
    # scripts/helm runs the cached helm of the pinned version: put the stand-in there.
    helm = cache / "bin" / f"helm-{_helm_version()}" / "helm"
    helm.parent.mkdir(parents=True)
    helm.write_text(f"#!/bin/sh\n{record}\n")
    helm.chmod(0o755)
    before = _snapshot(cache / "kwok")

    bin_dir = _bin_dir(tmp_path, fakes)

    result = _run(
        ["up", "--kind", "--set", "alerts.existingSecret=orion-alerts"],
        bin_dir,
        cache,
        "docs-test",
    )

    assert result.returncode == 0, result.stderr
    kubeconfig = cache / "kind" / "docs-test.kubeconfig"
    image = "orion-operator:kind-local"
    assert calls.read_text().splitlines() == [
        "docker info",
        "kind get clusters",
        f"kind create cluster --name docs-test --kubeconfig {kubeconfig} --wait 120s",
        f"docker build -t {image} {REPO}",
        f"kind load docker-image {image} --name docs-test",
        f"helm upgrade --install orion {REPO}/charts/orion-operator --kubeconfig {kubeconfig} "
        "--namespace orion-system --create-namespace --set image.repository=orion-operator "
        "--set image.tag=kind-local --set image.pullPolicy=Never --wait --timeout 5m "
        "--set alerts.existingSecret=orion-alerts",
    ]
    assert _snapshot(cache / "kwok") == before  # the local control plane is not touched

    printed = _run(["kubeconfig", "--kind"], bin_dir, cache, "docs-test")
    assert printed.stdout.strip() == str(kubeconfig)
