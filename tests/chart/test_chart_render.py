"""Every values file, in both worker modes, with and without the Knative API: lint, render, validate."""

from __future__ import annotations

import itertools

import pytest

from airflow_knative.naming import is_dns_1123_label
from tests.chart.chart_helpers import (
    CHART,
    MODES,
    OFFLINE_SECRETS,
    SHARED_SCHEMAS,
    VALUES_DIR,
    VALUES_FILES,
    render,
    run_helm,
)
from tests.chart.knative_checks import knative_schema_errors, knative_webhook_problems, validate_core

COMBINATIONS = list(itertools.product(VALUES_FILES, MODES, (True, False)))
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def _id(combo: tuple[str | None, str, bool]) -> str:
    values_file, mode, api = combo
    return f"{values_file or 'defaults'}-{mode}-{'knative-api' if api else 'no-api'}"


@pytest.mark.parametrize(("values_file", "mode"), list(itertools.product(VALUES_FILES, MODES)))
def test_helm_lint_strict(values_file: str | None, mode: str) -> None:
    args = ["lint", "--strict", str(CHART), "--set", f"workers.mode={mode}", *OFFLINE_SECRETS]
    if values_file:
        args += ["-f", str(VALUES_DIR / values_file)]
    result = run_helm(args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("values_file", "mode", "knative_api"), COMBINATIONS, ids=map(_id, COMBINATIONS))
def test_every_object_validates_strictly(values_file: str | None, mode: str, knative_api: bool) -> None:
    result = render(values_file, mode, knative_api)
    assert result.docs, "nothing rendered"
    problems: list[str] = []
    for doc in result.docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["apiVersion"].startswith("serving.knative.dev/"):
            problems += [f"{where}: {e}" for e in knative_schema_errors(doc, SHARED_SCHEMAS)]
            problems += knative_webhook_problems(doc)
        else:
            try:
                validate_core(doc)
            except Exception as exc:  # kubernetes_validate raises several error types
                problems.append(f"{where}: {exc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("values_file", "mode", "knative_api"), COMBINATIONS, ids=map(_id, COMBINATIONS))
def test_names_and_labels(values_file: str | None, mode: str, knative_api: bool) -> None:
    for doc in render(values_file, mode, knative_api).docs:
        name = doc["metadata"]["name"]
        assert is_dns_1123_label(name), f"{doc['kind']} name {name!r} is not a DNS label"
        labels = doc["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{doc['kind']} {name} lacks labels {missing}"


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_knative_api_only_changes_the_notes(values_file: str | None) -> None:
    """Rendering without the Knative API (helm template offline) gives the same objects as with it."""

    def stable(docs: list[dict]) -> list[dict]:
        return [{**d, "data": "(random)"} if d["kind"] == "Secret" else d for d in docs]

    assert stable(render(values_file, "knative", True).docs) == stable(
        render(values_file, "knative", False).docs
    )


def test_webhook_checks_catch_what_knative_refuses() -> None:
    """The project's own webhook rules must be able to fail."""
    doc = render(None, "knative", True).component("Service", "worker")[0]
    bad = {
        **doc,
        "metadata": {**doc["metadata"], "name": "x" * 60},
        "spec": {
            "template": {
                **doc["spec"]["template"],
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1.5"}},
                "spec": {**doc["spec"]["template"]["spec"], "timeoutSeconds": 3600},
            }
        },
    }
    problems = "\n".join(knative_webhook_problems(bad))
    assert "revision suffix" in problems
    assert "min-scale" in problems
    assert "timeoutSeconds 3600" in problems
    assert knative_webhook_problems(doc, features=frozenset()), "PVC volumes need Knative feature flags"


def test_crd_schema_rejects_unknown_fields() -> None:
    doc = render(None, "knative", True).component("Service", "worker")[0]
    container = {**doc["spec"]["template"]["spec"]["containers"][0], "imagePullPolicyy": "Always"}
    bad = {**doc, "spec": {"template": {**doc["spec"]["template"], "spec": {"containers": [container]}}}}
    errors = knative_schema_errors(bad, SHARED_SCHEMAS)
    assert any("imagePullPolicyy" in e for e in errors), errors
