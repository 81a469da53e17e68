"""Every error a gateway user can act on, against the real stack."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.processes import answers_ok, wait_until
from tests.conftest import free_port
from tests.e2e.conftest import AUTH, RunningStack

pytestmark = pytest.mark.e2e


def test_wrong_password_is_401(running_stack: RunningStack) -> None:
    response = running_stack.gateway.post(
        "/runWorkflow/compute_avg", json={"input": [1]}, auth=(AUTH[0], "not-the-password")
    )
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]


def test_missing_credentials_is_401(running_stack: RunningStack) -> None:
    response = httpx.post(f"{running_stack.config.gateway_url}/runWorkflow/compute_avg", json={"input": [1]})
    assert response.status_code == 401


def test_unknown_dag_is_404_naming_it(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("no_such_dag", [1])
    assert response.status_code == 404
    assert "no_such_dag" in response.json()["error"]


def test_malformed_json_is_400(running_stack: RunningStack) -> None:
    response = running_stack.gateway.post(
        "/runWorkflow/compute_avg", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_missing_input_is_400(running_stack: RunningStack) -> None:
    response = running_stack.gateway.post("/runWorkflow/compute_avg", json={"data": [1, 2]})
    assert response.status_code == 400
    assert "input" in response.json()["error"]


def test_oversized_body_is_413(running_stack: RunningStack) -> None:
    response = running_stack.gateway.post("/runWorkflow/compute_avg", json={"input": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


def test_wait_false_answers_202_and_the_run_can_be_polled(running_stack: RunningStack) -> None:
    response = running_stack.run_workflow("compute_avg", [3, 5], wait="false")
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]

    assert running_stack.wait_for_end(status_url)["output"] == 4


@pytest.fixture
def impatient_gateway(running_stack: RunningStack) -> Iterator[str]:
    """A second real gateway process on the same Airflow, waiting at most one second."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_knative.cli",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--airflow-url",
            running_stack.config.api_url,
            "--wait-timeout",
            "1",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers_ok(f"{url}/healthz"), timeout=30, interval=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_wait_past_the_timeout_is_504_with_the_run_id(
    running_stack: RunningStack, impatient_gateway: str
) -> None:
    response = httpx.post(
        f"{impatient_gateway}/runWorkflow/e2e_slow", json={"input": 4}, auth=AUTH, timeout=30
    )
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["run_id"]

    assert running_stack.wait_for_end(body["status_url"])["output"] == "rested"


def test_a_waiting_call_does_not_block_others(running_stack: RunningStack) -> None:
    # SQLite (the local stack's database) fails concurrent triggers with "database is
    # locked", so the calls here overlap while they wait rather than while they trigger;
    # `make bench` sends 50 truly concurrent calls against PostgreSQL.
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(running_stack.run_workflow, "e2e_slow", 6)
        wait_until(lambda: _runs_of(running_stack, "e2e_slow") > 0, timeout=30, interval=0.2)
        fast = running_stack.run_workflow("compute_avg", [1, 5])

        assert fast.status_code == 200, fast.text
        assert fast.json()["output"] == 3
        assert not slow.done(), "the fast call should not have waited for the slow one"
        assert slow.result().json()["output"] == "rested"


def _runs_of(running_stack: RunningStack, dag_id: str) -> int:
    """How many runs of ``dag_id`` are queued or running, from Airflow's REST API."""
    config = running_stack.config
    with AirflowClient(config.api_url, *AUTH) as api:
        return api.active_runs(dag_id)
