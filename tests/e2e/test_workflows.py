"""Workflows through the gateway, the KnativeExecutor and the warm workers, end to end."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def test_compute_avg_distributed_returns_the_average(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("compute_avg_distributed", [1, 2, 3, 4])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"] == 2.5
    assert body["state"] == "success"
    assert body["run_id"]


def test_dynamic_mapping_runs_one_task_per_item(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("etl_example_dynamic", [1, 2, 3, 4, 5])

    assert response.status_code == 200, response.text
    assert response.json()["output"] == 30
    run_id = response.json()["run_id"]
    mapped = [
        e
        for e in running_stack.worker_events("task_finished")
        if e["run_id"] == run_id and e["task_id"] == "transform"
    ]
    assert sorted(e["map_index"] for e in mapped) == [0, 1, 2, 3, 4]


def test_every_task_ran_in_a_worker_process(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("compute_avg_distributed", [2, 4])
    run_id = response.json()["run_id"]

    finished = [e for e in running_stack.worker_events("task_finished") if e["run_id"] == run_id]

    assert sorted(e["task_id"] for e in finished) == ["compute_count", "compute_sum", "do_avg", "extract"]
    assert all(e["state"] == "success" and e["exit_code"] == 0 for e in finished)
    assert {e["worker"] for e in finished} <= {"local-worker-0", "local-worker-1"}
    log = running_stack.scheduler_log()
    assert "KnativeExecutor started" in log
    assert "LocalExecutor" not in log
    assert log.count(f'"run_id": "{run_id}"') >= 4  # the executor's knative_task_done lines


def test_upstream_values_travel_inline_without_api_reads(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("compute_avg_distributed", [10, 20])
    assert response.json()["output"] == 15
    run_id = response.json()["run_id"]

    by_task = {e["task_id"]: e for e in running_stack.worker_events("task_finished") if e["run_id"] == run_id}

    assert by_task["do_avg"]["xcom_reads_inline"] == 2
    assert by_task["do_avg"]["xcom_reads_api"] == 0
    assert by_task["compute_sum"]["xcom_reads_inline"] == 1
    assert by_task["compute_sum"]["xcom_reads_api"] == 0


def test_a_failing_task_is_named_with_the_run(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("e2e_failing", [1, 2])

    body = response.json()
    assert response.status_code >= 400, body
    assert body["state"] == "failed"
    assert body["run_id"]
    failed = {t["task_id"]: t["state"] for t in body["failed_tasks"]}
    assert failed["explode"] == "failed"
    assert failed.get("after") == "upstream_failed"


def test_each_tasks_rendered_fields_are_stored_for_the_ui(running_stack: RunningStack) -> None:
    # The worker sends a task's first rendered-fields write while the task code starts
    # (airflow_knative/worker/write_behind.py): it must still reach Airflow.
    response = running_stack.run_workflow("compute_avg_distributed", [3, 5])
    assert response.json()["output"] == 4
    run_id = response.json()["run_id"]

    with running_stack.airflow() as api:
        instances = api.task_instances("compute_avg_distributed", run_id)

    rendered = {ti["task_id"]: ti["rendered_fields"] for ti in instances}
    assert set(rendered) == {"extract", "compute_sum", "compute_count", "do_avg"}
    assert rendered["compute_sum"]["op_args"] == [[3, 5]], rendered["compute_sum"]
