"""A task the routing table does not know fails at once, with a log line that says what to do."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.processes import wait_until
from airflow_knative.routing import load_routing_table, write_routing_table
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

UNROUTED_DAG = textwrap.dedent(
    """
    from airflow.sdk import dag, task


    @dag(dag_id="e2e_unrouted", schedule=None, catchup=False)
    def e2e_unrouted():
        @task
        def lonely():
            return 1

        lonely()


    e2e_unrouted()
    """
)


def test_task_without_route_fails_fast_naming_dag_task_and_file(
    running_stack: RunningStack, e2e_dags: Path
) -> None:
    # The local stack routes a DAG as Airflow parses it, before Airflow stores it. Removing
    # its route by hand afterwards (it stays removed until the DAG's tasks change) stands in
    # for a cluster whose routing table lacks the DAG because `make generate` was forgotten.
    (e2e_dags / "e2e_unrouted.py").write_text(UNROUTED_DAG)
    with running_stack.airflow() as api:
        wait_until(lambda: "e2e_unrouted" in api.dag_ids(), timeout=90, interval=1)
    routing_file = running_stack.config.routing_file
    table = load_routing_table(routing_file)
    assert "e2e_unrouted" in table.tasks
    table.tasks.pop("e2e_unrouted")
    write_routing_table(table, routing_file)

    accepted = running_stack.run_workflow("e2e_unrouted", None, wait="false")
    assert accepted.status_code == 202, accepted.text

    final = running_stack.wait_for_end(accepted.json()["status_url"])
    assert final["state"] == "failed"
    # The gateway's answer carries the reason, read from the task's Airflow log.
    (lonely,) = final["failed_tasks"]
    assert "no route for dag_id='e2e_unrouted' task_id='lonely'" in lonely["error"]
    lines = running_stack.scheduler_log().splitlines()
    log_line = next(line for line in lines if "no route for dag_id='e2e_unrouted'" in line)
    assert "task_id='lonely'" in log_line
    assert str(running_stack.config.routing_file) in log_line

    # The UI shows the reason in the task's own log, not "Could not read served logs".
    task_log = task_log_text(running_stack, "e2e_unrouted", accepted.json()["run_id"], "lonely")
    assert "no route for dag_id='e2e_unrouted' task_id='lonely'" in task_log
    assert "make generate" in task_log
    assert "Could not read served logs" not in task_log


def task_log_text(
    running_stack: RunningStack, dag_id: str, run_id: str, task_id: str, try_number: int = 1
) -> str:
    """The task's log as Airflow's REST API serves it to the UI (every line's message, joined)."""
    config = running_stack.config
    with AirflowClient(config.api_url, config.admin_user, config.admin_password) as api:
        run_path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        response = api.client.get(
            f"{run_path}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )
    response.raise_for_status()
    content = response.json()["content"]
    return "\n".join(
        str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content
    )
