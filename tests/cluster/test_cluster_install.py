"""Skeleton: install the chart with values/kind.yaml and run `helm test` (needs kind + Knative)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "chart"))

pytestmark = pytest.mark.cluster


def test_install_and_helm_test() -> None:
    from chart_helpers import find_helm  # tests/chart/chart_helpers.py

    helm = find_helm()
    namespace = "airflow-knative-test"
    install = [helm, "upgrade", "--install", "airflow", str(ROOT / "chart"), "--namespace", namespace]
    install += ["--create-namespace", "-f", str(ROOT / "values" / "kind.yaml"), "--wait", "--timeout", "15m"]
    subprocess.run(install, check=True)
    subprocess.run([helm, "test", "airflow", "--namespace", namespace, "--timeout", "5m"], check=True)
