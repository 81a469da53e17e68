"""What can be checked here of the cluster path: the CI workflow, the kind targets, the flags they set.

These run in `make test` (no cluster needed); the cluster tests themselves skip here.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.chart.knative_checks import DOCUMENTED_FEATURES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def find_actionlint() -> str:
    for candidate in (os.environ.get("ACTIONLINT"), str(ROOT / ".tools" / "venv" / "bin" / "actionlint")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("actionlint not found: run `make tools` (installs requirements/tools.txt into .tools/venv)")


def make_dry_run(target: str, *variables: str) -> str:
    """The commands `make <target>` would run, without running them."""
    result = subprocess.run(
        ["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = subprocess.run(
        [find_actionlint(), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run(
        [find_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "nope" in result.stdout


def test_ci_workflow_runs_the_kind_targets() -> None:
    text = (ROOT / ".github" / "workflows" / "kind.yml").read_text()
    assert "make kind-up" in text and "make kind-test" in text


def test_kind_up_pins_knative_and_enables_every_feature_the_chart_needs() -> None:
    commands = make_dry_run("kind-up")
    version = re.search(r"serving/releases/download/knative-v(\d+\.\d+\.\d+)/serving-core\.yaml", commands)
    assert version, commands
    schema = next((ROOT.parent / "shared" / "schemas").glob("knative-serving-v*-services.crd.yaml"), None)
    if schema is not None:
        assert f"v{version.group(1)}-" in schema.name, (
            "kind-up installs another Knative than the chart is checked against"
        )
    assert "net-kourier/releases/download" in commands and "ingress-class" in commands
    for feature in DOCUMENTED_FEATURES:
        assert f'"{feature}":"enabled"' in commands, feature
    assert "registries-skipping-tag-resolving" in commands


def test_kind_test_builds_loads_and_runs_the_cluster_tests() -> None:
    commands = make_dry_run("kind-test", "KIND_ENGINE=docker", "IMAGE=airflow-knative:dev")
    assert "image IMAGE=airflow-knative:dev" in commands
    assert "kind load docker-image airflow-knative:dev" in commands
    assert "pytest tests/cluster -m cluster" in commands
    podman = make_dry_run("kind-load", "KIND_ENGINE=podman")
    assert "podman save" in podman and "kind load image-archive" in podman
