"""Small rules of the workflow service and the error mapping (no Airflow needed)."""

from __future__ import annotations

import httpx
import pytest

from airflow_knative.airflow_rest import segment, token_refused
from airflow_knative.gateway.airflow_api import (
    AirflowBadResponse,
    AirflowForbidden,
    AirflowNotFound,
    AirflowUnreachable,
    CredentialsRejected,
    is_transient,
)
from airflow_knative.gateway.errors import GatewayError, from_airflow
from airflow_knative.gateway.workflow import ExpiringMap, poll_delay, status_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_run_ids_are_quoted_in_paths() -> None:
    run_id = "manual__2026-01-01T00:00:00.123456+00:00"
    assert segment(run_id) == "manual__2026-01-01T00%3A00%3A00.123456%2B00%3A00"
    assert segment("a/b c") == "a%2Fb%20c"
    assert status_url("", "my_dag", run_id) == f"/runs/my_dag/{segment(run_id)}"
    assert status_url("/gw", "d", "r") == "/gw/runs/d/r"


def test_poll_delay_is_the_interval_while_few_calls_wait() -> None:
    assert poll_delay(0.05, 1, 100) == 0.05
    assert poll_delay(0.05, 5, 100) == 0.05


def test_poll_delay_stretches_to_keep_the_total_rate() -> None:
    assert poll_delay(0.05, 20, 100) == pytest.approx(0.2)
    assert poll_delay(0.05, 200, 100) == pytest.approx(2.0)


def test_expiring_map_forgets_after_ttl() -> None:
    clock = FakeClock()
    cache: ExpiringMap[str, int] = ExpiringMap(60, clock)
    cache.set("dag", 1)
    clock.now = 59.9
    assert cache.get("dag") == 1
    clock.now = 60
    assert cache.get("dag") is None


def test_expiring_map_discard_and_zero_ttl() -> None:
    cache: ExpiringMap[str, int] = ExpiringMap(60)
    cache.set("dag", 1)
    cache.discard("dag")
    cache.discard("never-set")
    assert cache.get("dag") is None
    off: ExpiringMap[str, int] = ExpiringMap(0)
    off.set("dag", 1)
    assert off.get("dag") is None


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (AirflowUnreachable("http://a", httpx.ConnectError("refused")), True),
        (AirflowBadResponse("x", 500, "db error"), True),
        (AirflowBadResponse("x", 503, "busy"), True),
        (AirflowBadResponse("x", 429, "slow down"), True),
        (AirflowBadResponse("x", 400, "bad"), False),
        (AirflowNotFound("gone"), False),
        (CredentialsRejected("no"), False),
    ],
)
def test_transient_errors(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (401, {"detail": "Token Expired"}, True),
        (401, {"detail": "Not authenticated"}, True),
        (403, {"detail": "Invalid JWT token"}, True),
        (403, {"detail": "Forbidden"}, False),
        (404, {"detail": "Invalid JWT token"}, False),
        (200, {}, False),
    ],
)
def test_token_refused(status: int, body: dict[str, str], refused: bool) -> None:
    assert token_refused(httpx.Response(status, json=body)) is refused


def test_error_mapping() -> None:
    unreachable = from_airflow(AirflowUnreachable("http://airflow:8080", httpx.ConnectError("refused")))
    assert unreachable.status == 502
    assert "http://airflow:8080" in unreachable.message
    assert unreachable.body()["airflow_url"] == "http://airflow:8080"

    rejected = from_airflow(CredentialsRejected("bad password"))
    assert rejected.status == 401
    assert rejected.headers["WWW-Authenticate"] == 'Basic realm="airflow-knative"'

    assert from_airflow(AirflowForbidden("may not")).status == 403
    assert from_airflow(AirflowBadResponse("x", 500, "db")).status == 502
    assert from_airflow(AirflowNotFound("gone")).status == 502  # a 404 nobody expected

    not_found = GatewayError(404, "no such DAG", extra={"dag_id": "d"})
    assert from_airflow(AirflowNotFound("gone"), not_found=not_found) is not_found


def test_error_body_starts_with_error() -> None:
    error = GatewayError(400, "bad", extra={"dag_id": "d"})
    assert list(error.body()) == ["error", "dag_id"]
    response = error.response()
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
