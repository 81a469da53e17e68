"""Cluster tests (marker `cluster`): run against a kind cluster with Knative, skipped without one.

A later issue fills these in; pytest-helm-charts provides the cluster fixtures
(`kube_cluster`, `random_namespace`) and needs `--kube-config` or $KUBECONFIG.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def cluster_unreachable_reason() -> str | None:
    """Return why no cluster can be used, or None when `kubectl` reaches one."""
    config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(config).is_file():
        return f"no kubeconfig at {config}: create a kind cluster with Knative (later issue)"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl not on PATH"
    probe = subprocess.run(
        [kubectl, "--kubeconfig", config, "version", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cluster in {config} not reachable: {probe.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if "cluster" in item.keywords and "tests/cluster" in str(item.path):
            reason = reason or cluster_unreachable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
