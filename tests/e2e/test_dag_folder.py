"""The stack follows its DAG folder: DAG files added, changed, removed or broken while it runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_knative.local.processes import wait_until
from airflow_knative.routing import load_routing_table
from tests.e2e.conftest import BROKEN_DAG_FILE, RunningStack

pytestmark = pytest.mark.e2e


def _dag(dag_id: str, task_id: str, expression: str) -> str:
    return textwrap.dedent(
        f"""
        from airflow.sdk import dag, task


        @dag(dag_id="{dag_id}", schedule=None, catchup=False)
        def {dag_id}():
            @task
            def {task_id}(params=None):
                data = (params or {{}}).get("data")
                return {expression}

            {task_id}()


        {dag_id}()
        """
    )


def _answer_once_known(running_stack: RunningStack, dag_id: str, data: object) -> dict[str, object]:
    """Call the DAG as soon as Airflow knows it (404 until then); return the final answer."""
    accepted = wait_until(
        lambda: (r := running_stack.run_workflow(dag_id, data, wait="false")).status_code == 202 and r,
        timeout=90,
        interval=0.5,
    )
    return running_stack.wait_for_end(accepted.json()["status_url"], timeout=90)


def test_a_dag_added_while_the_stack_runs_answers_through_the_gateway(
    running_stack: RunningStack, e2e_dags: Path
) -> None:
    (e2e_dags / "e2e_added.py").write_text(_dag("e2e_added", "double", "data * 2"))

    answer = _answer_once_known(running_stack, "e2e_added", 21)

    assert answer["state"] == "success", answer
    assert answer["output"] == 42
    assert "e2e_added" in load_routing_table(running_stack.config.routing_file).tasks
    wait_until(lambda: "DAG e2e_added is ready" in running_stack.stack_log(), timeout=30)


def test_a_changed_dag_runs_its_new_tasks_and_a_removed_one_is_unrouted(
    running_stack: RunningStack, e2e_dags: Path
) -> None:
    path = e2e_dags / "e2e_changing.py"
    path.write_text(_dag("e2e_changing", "first", "'first'"))
    assert _answer_once_known(running_stack, "e2e_changing", None)["output"] == "first"

    path.write_text(_dag("e2e_changing", "renamed", "'renamed'"))  # a task no route existed for

    def new_version_answers() -> bool:
        answer = _answer_once_known(running_stack, "e2e_changing", None)
        assert answer["state"] == "success", answer  # never a run that fails for want of a route
        return answer["output"] == "renamed"

    wait_until(new_version_answers, timeout=120, interval=1)

    path.unlink()
    with running_stack.airflow() as api:
        wait_until(lambda: "e2e_changing" not in api.dag_ids(), timeout=90)
    wait_until(
        lambda: "e2e_changing" not in load_routing_table(running_stack.config.routing_file).tasks,
        timeout=30,
    )
    assert "DAG e2e_changing is gone from Airflow" in running_stack.stack_log()


def test_a_broken_file_is_listed_as_airflow_lists_it_and_the_others_run(running_stack: RunningStack) -> None:
    # e2e_broken.py was in the folder from the start, beside the good DAG files.
    with running_stack.airflow() as api:
        errors = api.import_errors()
    broken = [name for name in errors if name.endswith(BROKEN_DAG_FILE)]
    assert broken, errors
    assert "SyntaxError" in errors[broken[0]]
    assert f"{BROKEN_DAG_FILE} does not import" in running_stack.stack_log()
    assert running_stack.stack_events("stack_up")[0]["import_errors"] == broken

    response = running_stack.run_workflow("compute_avg", [2, 4])
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 3


def test_a_file_that_breaks_while_the_stack_runs_is_reported(
    running_stack: RunningStack, e2e_dags: Path
) -> None:
    path = e2e_dags / "e2e_breaks_later.py"
    path.write_text(_dag("e2e_breaks_later", "fine", "1"))
    assert _answer_once_known(running_stack, "e2e_breaks_later", None)["output"] == 1

    path.write_text("import no_such_module_anywhere\n" + path.read_text())

    wait_until(lambda: "e2e_breaks_later.py does not import" in running_stack.stack_log(), timeout=90)
    assert "ModuleNotFoundError: No module named 'no_such_module_anywhere'" in running_stack.stack_log()
    assert running_stack.stack.processes.components, "the stack kept running"
    running_stack.stack.processes.check_alive()
