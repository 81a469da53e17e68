"""Token handling of the Airflow API client: exchange, cache, retry on a refused token.

These drive the client through ``httpx.MockTransport`` to pin down its retry
rules; they say nothing about Airflow itself (tests/e2e does, against a real one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from airflow_knative.gateway.airflow_api import (
    AirflowApi,
    AirflowForbidden,
    AirflowUnreachable,
    CredentialsRejected,
)
from airflow_knative.gateway.auth import BasicCredentials, TokenCache

ADMIN = BasicCredentials("admin", "admin")
DAG = {"dag_id": "d", "is_paused": False}


class Recorder:
    """A transport answering from a handler, remembering every request."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def make_api(recorder: Recorder, ttl: float = 300) -> AirflowApi:
    http = httpx.AsyncClient(base_url="http://airflow.test", transport=httpx.MockTransport(recorder))
    return AirflowApi(http=http, tokens=TokenCache(ttl))


def login(request: httpx.Request, tokens: list[str]) -> httpx.Response:
    body = json.loads(request.content)
    if (body["username"], body["password"]) != ("admin", "admin"):
        return httpx.Response(401, json={"detail": "Invalid credentials"})
    tokens.append(f"token-{len(tokens)}")
    return httpx.Response(201, json={"access_token": tokens[-1]})


async def test_token_is_exchanged_once_then_reused() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        assert request.headers["Authorization"] == "Bearer token-0"
        return httpx.Response(200, json=DAG)

    recorder = Recorder(handler)
    session = make_api(recorder).as_user(ADMIN)
    await session.get_dag("d")
    await session.get_dag("d")
    assert recorder.paths() == ["POST /auth/token", "GET /api/v2/dags/d", "GET /api/v2/dags/d"]


async def test_concurrent_calls_share_one_exchange() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        return httpx.Response(200, json=DAG)

    recorder = Recorder(handler)
    session = make_api(recorder).as_user(ADMIN)
    await asyncio.gather(*(session.get_dag("d") for _ in range(10)))
    assert recorder.paths().count("POST /auth/token") == 1


@pytest.mark.parametrize(("status", "detail"), [(401, "Token Expired"), (403, "Invalid JWT token")])
async def test_refused_cached_token_is_dropped_and_the_call_retried_once(status: int, detail: str) -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        if request.headers["Authorization"] == "Bearer token-0":
            return httpx.Response(status, json={"detail": detail})
        return httpx.Response(200, json=DAG)

    recorder = Recorder(handler)
    api = make_api(recorder)
    api.tokens.put(ADMIN.cache_key, "token-0")  # cached earlier, refused now
    tokens.append("token-0")
    session = api.as_user(ADMIN)
    assert (await session.get_dag("d")).dag_id == "d"
    assert recorder.paths() == ["GET /api/v2/dags/d", "POST /auth/token", "GET /api/v2/dags/d"]
    assert api.tokens.get(ADMIN.cache_key) == "token-1"


async def test_fresh_token_refused_is_not_retried() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        return httpx.Response(401, json={"detail": "Token Expired"})

    recorder = Recorder(handler)
    with pytest.raises(CredentialsRejected):
        await make_api(recorder).as_user(ADMIN).get_dag("d")
    assert recorder.paths() == ["POST /auth/token", "GET /api/v2/dags/d"]


async def test_wrong_password_is_rejected_and_not_cached() -> None:
    tokens: list[str] = []
    recorder = Recorder(lambda request: login(request, tokens))
    api = make_api(recorder)
    wrong = BasicCredentials("admin", "wrong")
    with pytest.raises(CredentialsRejected, match="admin"):
        await api.as_user(wrong).get_dag("d")
    assert len(api.tokens) == 0


async def test_permission_denied_is_forbidden_without_retry() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        return httpx.Response(403, json={"detail": "Forbidden"})

    recorder = Recorder(handler)
    with pytest.raises(AirflowForbidden, match="trigger DAG d"):
        await make_api(recorder).as_user(ADMIN).trigger_run("d", {"data": 1})
    assert recorder.paths().count("POST /auth/token") == 1


async def test_transport_error_names_the_airflow_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(AirflowUnreachable, match=r"http://airflow\.test.*connection refused"):
        await make_api(Recorder(handler)).as_user(ADMIN).get_dag("d")


async def test_run_ids_reach_airflow_quoted() -> None:
    tokens: list[str] = []
    run_id = "manual__2026-01-01T00:00:00+00:00"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        return httpx.Response(200, json={"dag_id": "d", "dag_run_id": run_id, "state": "running"})

    recorder = Recorder(handler)
    run = await make_api(recorder).as_user(ADMIN).get_run("d", run_id)
    assert run.run_id == run_id
    assert (
        recorder.requests[-1].url.raw_path
        == b"/api/v2/dags/d/dagRuns/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    )


async def test_task_instances_are_read_page_by_page() -> None:
    tokens: list[str] = []
    total = 230

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return login(request, tokens)
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = [
            {"task_id": "t", "map_index": i, "state": "success"}
            for i in range(offset, min(offset + limit, total))
        ]
        return httpx.Response(200, json={"task_instances": page, "total_entries": total})

    recorder = Recorder(handler)
    instances = await make_api(recorder).as_user(ADMIN).list_task_instances("d", "r", task_id="t")
    assert [ti.map_index for ti in instances] == list(range(total))
    assert len(recorder.requests) == 1 + 3
