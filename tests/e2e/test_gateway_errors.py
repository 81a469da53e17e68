"""Every error a gateway user can act on, against the real stack."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import AUTH, RunningStack, wait_for

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

    def finished() -> httpx.Response | None:
        polled = running_stack.gateway.get(status_url)
        return polled if polled.json().get("state") == "success" else None

    assert wait_for(finished).json()["output"] == 4


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
        wait_for(lambda: _healthy(url), timeout=30, interval=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_wait_past_the_timeout_is_504_with_the_run_id(
    running_stack: RunningStack, impatient_gateway: str
) -> None:
    response = httpx.post(
        f"{impatient_gateway}/runWorkflow/e2e_slow", json={"input": 4}, auth=AUTH, timeout=30
    )
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["run_id"]

    def finished() -> httpx.Response | None:
        polled = running_stack.gateway.get(body["status_url"])
        return polled if polled.json().get("state") == "success" else None

    assert wait_for(finished).json()["output"] == "rested"


def test_concurrent_requests_all_get_their_own_answer(running_stack: RunningStack) -> None:
    # Four at once: enough to show that no request waits for another. SQLite, the local
    # stack's default database, serialises writers; `make bench` runs 50 against PostgreSQL.
    inputs = [[i, i + 2] for i in range(4)]
    with ThreadPoolExecutor(len(inputs)) as pool:
        responses = list(
            pool.map(lambda data: running_stack.run_workflow("compute_avg_distributed", data), inputs)
        )

    assert [r.status_code for r in responses] == [200] * len(inputs)
    assert [r.json()["output"] for r in responses] == [i + 1 for i in range(4)]
    assert len({r.json()["run_id"] for r in responses}) == len(inputs)
