"""The gateway's /metrics: served without auth, results counted by outcome (no DAG ids in labels)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from airflow_knative.gateway.app import create_app
from airflow_knative.gateway.metrics import result_outcome
from airflow_knative.gateway.settings import GatewaySettings
from tests.conftest import free_port
from tests.metrics_readers import Samples, parse_metrics


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(airflow_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.text)


def test_metrics_need_no_auth_and_count_a_refused_call_without_its_dag_id(client: TestClient) -> None:
    key = ("airflow_knative_gateway_results_total", frozenset({("outcome", "refused")}))
    before = scrape(client).get(key, 0.0)

    assert client.post("/runWorkflow/some_dag_id", json={"input": 1}).status_code == 401

    after = client.get("/metrics").text
    assert scrape(client)[key] == before + 1
    assert "some_dag_id" not in after


@pytest.mark.parametrize(
    ("status", "triggered", "state", "outcome"),
    [
        (200, True, "success", "success"),
        (500, True, "failed", "failed"),
        (202, True, "queued", "accepted"),
        (504, True, "running", "timeout"),
        (499, True, "running", "client_gone"),
        (401, False, "-", "refused"),
        (404, False, "-", "refused"),
        (502, False, "-", "error"),
        (502, True, "running", "error"),
    ],
)
def test_each_answer_has_one_outcome(status: int, triggered: bool, state: str, outcome: str) -> None:
    assert result_outcome(status, triggered, state) == outcome
