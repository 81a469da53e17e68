"""A failed run's answer says why each task failed and where its log is; polling says "not yet"."""

from __future__ import annotations

import pytest

from airflow_knative.local.processes import wait_until
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def test_a_failed_run_names_the_error_and_a_log_path_that_returns_the_log(
    running_stack: RunningStack,
) -> None:
    response = running_stack.run_workflow("e2e_failing", [1, 2])

    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"] == "run failed"
    by_task = {task["task_id"]: task for task in body["failed_tasks"]}
    explode = by_task["explode"]
    assert explode["state"] == "failed"
    assert explode["error"] == "ValueError: refusing to process [1, 2]"
    assert by_task["after"]["state"] == "upstream_failed"
    assert "upstream" in by_task["after"]["error"]

    assert explode["log_url"] == running_stack.config.api_url + explode["log_path"]
    with running_stack.airflow() as api:
        log = api.client.get(explode["log_path"])
    assert log.status_code == 200, log.text
    assert "refusing to process [1, 2]" in log.text


def test_polling_answers_202_until_the_run_is_done(running_stack: RunningStack) -> None:
    accepted = running_stack.run_workflow("e2e_slow", 3, wait="false")
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]

    pending = running_stack.gateway.get(status_url)
    assert pending.status_code == 202, pending.text
    assert pending.json()["state"] in ("queued", "running")
    assert pending.headers["Location"] == status_url

    done = wait_until(
        lambda: (r := running_stack.gateway.get(status_url)).status_code != 202 and r, timeout=90
    )
    assert done.status_code == 200, done.text
    assert done.json()["output"] == "rested"
