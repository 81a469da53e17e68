"""The shared Airflow REST layer: quoted paths, paging, token auth on sync and async clients.

The auth rules (renew before ``exp``, log in again once on a refused token) are
driven through ``httpx.MockTransport``: a real API server cannot be made to expire
or refuse a token on cue. Paging and login against a real Airflow API server are
tested in tests/e2e/test_many_dags.py (more than 100 DAGs and task instances).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import pytest

from airflow_knative.airflow_rest import (
    PAGE_SIZE,
    AirflowClient,
    AirflowLoginError,
    AirflowTokenAuth,
    Pages,
    api_path,
)

BASE = "http://airflow.test/prefix"


def jwt(exp: float) -> str:
    """An unsigned token with an ``exp`` claim (the client reads ``exp``, never verifies)."""
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"header.{payload}.signature"


class FakeAirflow:
    """Answers /auth/token and a paged /api/v2/dags like Airflow: at most 100 items per page."""

    def __init__(self, dags: int = 3, lifetime: float = 3600.0) -> None:
        self.dags = [{"dag_id": f"dag_{i:03d}"} for i in range(dags)]
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/prefix/auth/token":
            body = json.loads(request.content)
            if body != {"username": "admin", "password": "admin"}:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            self.issued.append(jwt(time.time() + self.lifetime) + str(len(self.issued)))
            return httpx.Response(201, json={"access_token": self.issued[-1]})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.revoked:
            return httpx.Response(401, json={"detail": "Not authenticated"})
        assert request.url.path == "/prefix/api/v2/dags"
        offset = int(request.url.params["offset"])
        limit = min(int(request.url.params["limit"]), 100)
        page = self.dags[offset : offset + limit]
        return httpx.Response(200, json={"dags": page, "total_entries": len(self.dags)})

    def logins(self) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith("/auth/token"))


def sync_client(fake: FakeAirflow, auth: AirflowTokenAuth) -> httpx.Client:
    return httpx.Client(base_url=BASE, transport=httpx.MockTransport(fake), auth=auth)


def async_client(fake: FakeAirflow, auth: AirflowTokenAuth) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(fake), auth=auth)


def test_api_path_quotes_every_segment() -> None:
    assert (
        api_path("dags", "d", "dagRuns", "manual__2026-01-01T00:00:00+00:00")
        == "/api/v2/dags/d/dagRuns/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    )
    assert api_path("dags", "a/b") == "/api/v2/dags/a%2Fb"


def test_pages_read_past_the_page_limit() -> None:
    fake = FakeAirflow(dags=2 * PAGE_SIZE + 5)
    with sync_client(fake, AirflowTokenAuth.for_server(BASE, "admin", "admin")) as client:
        pages = Pages("dags")
        while not pages.add(client.get(api_path("dags"), params=pages.params()).json()):
            pass
    assert [d["dag_id"] for d in pages.items] == [d["dag_id"] for d in fake.dags]
    assert [r.url.params["offset"] for r in fake.requests if "offset" in r.url.params] == ["0", "100", "200"]


def test_an_empty_page_ends_the_loop_even_if_total_entries_is_wrong() -> None:
    pages = Pages("dags")
    assert not pages.add({"dags": [{"dag_id": "a"}], "total_entries": 5})
    assert pages.add({"dags": [], "total_entries": 5})


def test_sync_client_logs_in_once_and_reads_every_dag() -> None:
    fake = FakeAirflow(dags=150)
    with AirflowClient(BASE, "admin", "admin", transport=httpx.MockTransport(fake)) as client:
        assert fake.logins() == 1  # at once: a wrong password fails here
        assert len(client.dag_ids()) == 150
    assert fake.logins() == 1


def test_wrong_password_is_a_login_error_naming_the_user() -> None:
    fake = FakeAirflow()
    with (
        sync_client(fake, AirflowTokenAuth.for_server(BASE, "admin", "wrong")) as client,
        pytest.raises(AirflowLoginError, match=r"user 'admin'.*401 Invalid credentials"),
    ):
        client.get(api_path("dags"), params={"limit": 1, "offset": 0})


def _get_sync(fake: FakeAirflow, auth: AirflowTokenAuth) -> int:
    with sync_client(fake, auth) as client:
        return client.get(api_path("dags"), params={"limit": 1, "offset": 0}).status_code


def _get_async(fake: FakeAirflow, auth: AirflowTokenAuth) -> int:
    import asyncio

    async def get() -> int:
        async with async_client(fake, auth) as client:
            response = await client.get(api_path("dags"), params={"limit": 1, "offset": 0})
            return response.status_code

    return asyncio.run(get())


@pytest.mark.parametrize("get", [_get_sync, _get_async], ids=["sync", "async"])
def test_the_same_auth_serves_sync_and_async_clients(get: Callable[..., int]) -> None:
    fake = FakeAirflow()
    auth = AirflowTokenAuth.for_server(BASE, "admin", "admin")
    assert [get(fake, auth), get(fake, auth)] == [200, 200]
    assert fake.logins() == 1  # the token is reused


@pytest.mark.parametrize("get", [_get_sync, _get_async], ids=["sync", "async"])
def test_a_refused_token_is_renewed_and_the_request_sent_again_once(get: Callable[..., int]) -> None:
    fake = FakeAirflow()
    auth = AirflowTokenAuth.for_server(BASE, "admin", "admin")
    assert get(fake, auth) == 200
    fake.revoked.add(fake.issued[-1])  # e.g. the API server's jwt_secret changed
    assert get(fake, auth) == 200
    assert fake.logins() == 2
    assert [r.url.path for r in fake.requests][-3:] == [
        "/prefix/api/v2/dags",
        "/prefix/auth/token",
        "/prefix/api/v2/dags",
    ]


@pytest.mark.parametrize("get", [_get_sync, _get_async], ids=["sync", "async"])
def test_a_token_about_to_expire_is_renewed_before_it_is_sent(get: Callable[..., int]) -> None:
    fake = FakeAirflow(lifetime=10.0)  # within the renewal margin from the start
    auth = AirflowTokenAuth.for_server(BASE, "admin", "admin")
    assert [get(fake, auth), get(fake, auth)] == [200, 200]
    assert fake.logins() == 2
