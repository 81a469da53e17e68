"""A task the routing table does not know fails at once, with a log line that says what to do."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack, wait_for

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
    # Added after the stack wrote its routing table, as if someone forgot `make generate`.
    (e2e_dags / "e2e_unrouted.py").write_text(UNROUTED_DAG)
    accepted = wait_for(
        lambda: (
            (r := running_stack.run_workflow("e2e_unrouted", None, wait="false")).status_code == 202 and r
        ),
        timeout=90,
        interval=2,
    )

    assert running_stack.wait_for_end(accepted.json()["status_url"])["state"] == "failed"
    lines = running_stack.scheduler_log().splitlines()
    log_line = next(line for line in lines if "no route for dag_id='e2e_unrouted'" in line)
    assert "task_id='lonely'" in log_line
    assert str(running_stack.config.routing_file) in log_line
