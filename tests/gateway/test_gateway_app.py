"""The HTTP surface for requests answered before Airflow is involved, in-process.

Requests that reach Airflow are tested in tests/e2e against a real one; the one
exception here is an Airflow URL where nothing listens, which is the real
"Airflow unreachable" situation, not an imitation of it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from airflow_knative.gateway.app import create_app
from airflow_knative.gateway.settings import GatewaySettings
from tests.conftest import free_port

AUTH = ("admin", "admin")


@pytest.fixture
def nowhere() -> str:
    """An Airflow URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def client(nowhere: str) -> Iterator[TestClient]:
    settings = GatewaySettings(airflow_url=nowhere, max_body_bytes=64)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_healthz_needs_no_auth(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer x"}, {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}],
)
def test_missing_or_bad_basic_auth_is_401_with_challenge(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/runWorkflow/d", json={"input": 1}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="airflow-knative"'
    assert response.json()["error"]


def test_status_endpoint_needs_auth_too(client: TestClient) -> None:
    response = client.get("/runs/d/manual__x%2B00%3A00")
    assert response.status_code == 401


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/runWorkflow/d", content=b"{nope", auth=AUTH)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_missing_input_is_400(client: TestClient) -> None:
    response = client.post("/runWorkflow/d", json={"data": 1}, auth=AUTH)
    assert response.status_code == 400
    assert "input" in response.json()["error"]


def test_oversized_body_is_413(client: TestClient) -> None:
    response = client.post("/runWorkflow/d", json={"input": "x" * 100}, auth=AUTH)
    assert response.status_code == 413
    assert response.json()["max_body_bytes"] == 64


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"input": "'
        yield b"x" * 100
        yield b'"}'

    response = client.post("/runWorkflow/d", content=body(), auth=AUTH)
    assert response.status_code == 413


def test_bad_wait_flag_is_400(client: TestClient) -> None:
    response = client.post("/runWorkflow/d?wait=perhaps", json={"input": 1}, auth=AUTH)
    assert response.status_code == 400


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert "/runWorkflow/" in missing.json()["error"]
    wrong_method = client.get("/runWorkflow/d")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]


def test_unreachable_airflow_is_502_naming_its_url(client: TestClient, nowhere: str) -> None:
    response = client.post("/runWorkflow/d", json={"input": 1}, auth=AUTH)
    assert response.status_code == 502
    body = response.json()
    assert nowhere in body["error"]
    assert body["airflow_url"] == nowhere


def test_unreachable_airflow_on_status_is_502(client: TestClient, nowhere: str) -> None:
    response = client.get("/runs/d/r", auth=AUTH)
    assert response.status_code == 502
    assert nowhere in response.json()["error"]
