"""When the stack says "up", what the first task needs is already warm: read from the components' own logs.

Speed itself lives in `make bench`; this asserts the order of events that makes the
first call as fast as later ones (see airflow_knative/local/warmup.py for why).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def _execution_api_requests(running_stack: RunningStack) -> list[tuple[float, str]]:
    """(time, path) of every Execution API request the API server's access log lists, in order."""
    log = (running_stack.config.log_dir / "api-server.log").read_text(errors="replace")
    requests = []
    for line in log.splitlines():
        if "request finished" in line and "path=/execution/" in line:
            when = datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
            requests.append((when, line.split("path=", 1)[1].split(" ", 1)[0]))
    return requests


def test_the_first_call_after_up_finds_everything_it_needs_warm(running_stack: RunningStack) -> None:
    (up,) = running_stack.stack_events("stack_up")
    warmed = {event["warmed"]: event for event in running_stack.stack_events("stack_warm")}
    assert set(warmed) == {"execution_api", "dag_definitions"}
    assert all(event["ts"] < up["ts"] for event in warmed.values())
    assert "compute_avg_distributed" in warmed["dag_definitions"]["dag_ids"]

    # The API server built its Execution API for the stack's own request, before "up", not for a task's.
    first_when, first_path = _execution_api_requests(running_stack)[0]
    assert first_path == "/execution/health"
    assert first_when <= up["ts"]

    # Every worker had forked its warm pool before "up".
    ready = running_stack.worker_events("worker_ready")
    assert {event["worker"] for event in ready} == {"local-worker-0", "local-worker-1"}
    assert all(event["ts"] < up["ts"] and event["pool_pids"] for event in ready)

    response = running_stack.run_workflow("compute_avg_distributed", [1, 2, 3, 4])
    assert response.status_code == 200, response.text
    run_id = response.json()["run_id"]
    accepted = [e for e in running_stack.worker_events("task_accepted") if e["run_id"] == run_id]
    assert len(accepted) == 4
    assert all(event["ts"] > up["ts"] for event in accepted)
