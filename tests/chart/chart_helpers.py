"""Render the chart once per (values file, worker mode, API versions) and share the result.

Helm is the binary `make helm` installs (`make test` runs it first): $HELM, then
PATH, then .tools/bin/helm. Missing helm fails the tests with what to run,
rather than skipping them silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
VALUES_DIR = ROOT / "values"
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"
KNATIVE_API = ("serving.knative.dev/v1", "serving.knative.dev/v1/Service")
NAMESPACE = "airflow"
RELEASE = "airflow"

#: Renders here cannot see a cluster, so the chart refuses to generate secrets unless told
#: that the render is a throwaway one (see docs/chart.md, "Secrets").
OFFLINE_SECRETS = ("--set", "secrets.generateWithoutCluster=true")

#: None is the chart's own values.yaml; the others are the files in values/.
VALUES_FILES: list[str | None] = [None, *sorted(p.name for p in VALUES_DIR.glob("*.yaml"))]
MODES = ("knative", "deployment")


def find_helm() -> str:
    """Return the helm to run: $HELM, PATH, or the pinned one in .tools/bin."""
    candidates = [os.environ.get("HELM"), shutil.which("helm"), str(ROOT / ".tools" / "bin" / "helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("helm not found: run `make helm` (installs the pinned helm into .tools/bin)")


@dataclass(frozen=True)
class Rendered:
    """One `helm template` result, split into documents."""

    docs: list[dict[str, Any]]
    text: str

    def of_kind(self, kind: str, api_prefix: str = "") -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind and d["apiVersion"].startswith(api_prefix)]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name}, got {len(matches)}"
        return matches[0]

    def component(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [
            d
            for d in self.docs
            if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]


class HelmError(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


def run_helm(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_helm(), *args], capture_output=True, text=True, check=False, cwd=ROOT)


def template_args(
    values_file: str | None, mode: str | None, knative_api: bool, sets: Sequence[str]
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *OFFLINE_SECRETS]
    if values_file:
        args += ["-f", str(VALUES_DIR / values_file)]
    if mode:
        args += ["--set", f"workers.mode={mode}"]
    if knative_api:
        for api in KNATIVE_API:
            args += ["--api-versions", api]
    for item in sets:
        args += ["--set", item]
    return args


@cache
def render(
    values_file: str | None = None,
    mode: str | None = None,
    knative_api: bool = True,
    sets: tuple[str, ...] = (),
) -> Rendered:
    """Render once per argument combination for the whole session."""
    result = run_helm(template_args(values_file, mode, knative_api, sets))
    if result.returncode != 0:
        raise HelmError(result.stderr)
    docs = [d for d in yaml.load_all(result.stdout, Loader=yaml.CSafeLoader) if d]
    return Rendered(docs=docs, text=result.stdout)


@pytest.fixture(scope="session")
def rendered() -> Callable[..., Rendered]:
    return render


@pytest.fixture(scope="session")
def generated_services() -> dict[str, Any]:
    data = yaml.safe_load((CHART / "files" / "services.yaml").read_text())
    services: dict[str, Any] = data["services"]
    return services


#: What the chart's containers listen on (inside a pod, so every interface); tests here
#: only read rendered manifests and bind nothing.
CONTAINER_LISTEN_ADDRESS = "0.0.0.0"
