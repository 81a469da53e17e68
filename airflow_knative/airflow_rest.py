"""The one Airflow REST API (v2) layer: paths, paging and token auth for sync and async clients.

- :func:`api_path` quotes every segment (run ids hold ``:`` and ``+``).
- :class:`Pages` reads a collection page by page: Airflow serves at most
  ``[api] maximum_page_limit`` (default 100) items per page whatever ``limit`` asks.
- :class:`AirflowTokenAuth` is an :class:`httpx.Auth`: it logs in at ``/auth/token``,
  sends the JWT as a bearer token, logs in again shortly before the token's ``exp``
  and once more when Airflow refuses it (401, or 403 "Invalid JWT token" after the
  API server's secret changed). Being a generator-based flow, the same class serves
  :class:`httpx.Client` and :class:`httpx.AsyncClient`.

:class:`AirflowClient` (sync) is what the local stack, its tests and the benchmarks
use; the gateway's async client (gateway/airflow_api.py) builds on the same pieces,
with a token per caller (gateway/auth.py, login_guard.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

API = "/api/v2"
TOKEN_PATH = "/auth/token"
#: Items asked for per page: Airflow's default ``[api] maximum_page_limit``; it never serves more.
PAGE_SIZE = 100
TERMINAL_STATES = frozenset({"success", "failed"})
#: Seconds before a token's ``exp`` at which it is renewed rather than sent.
TOKEN_RENEW_MARGIN = 30.0


def segment(value: str | int) -> str:
    """Quote one URL path segment; run ids hold ``+`` and ``:``, which must not reach a server raw."""
    return quote(str(value), safe="")


def api_path(*segments: str | int) -> str:
    """``/api/v2/<segment>/...`` with every segment quoted."""
    return API + "/" + "/".join(segment(value) for value in segments)


def error_detail(response: httpx.Response) -> str:
    """Airflow's error message in ``response`` (FastAPI's ``detail``), or its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:500]
    return str(body)[:500]


def token_refused(response: httpx.Response) -> bool:
    """Whether Airflow refused the token itself rather than the action.

    Airflow answers 401 for an expired token but 403 "Invalid JWT token" for one
    it cannot verify (e.g. after its ``jwt_secret`` changed); both mean "log in again",
    unlike a 403 for a user lacking a permission.
    """
    if response.status_code == 401:
        return True
    return response.status_code == 403 and error_detail(response).lower() == "invalid jwt token"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read without verifying; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None


@dataclass
class Pages:
    """Reading one paged collection: ask for :meth:`params`, hand each answer to :meth:`add`.

    The loop itself stays with the caller, so sync and async clients share the rule::

        pages = Pages("dags")
        while not pages.add(client.get(path, params=pages.params()).json()):
            pass
        pages.items
    """

    key: str
    query: Mapping[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        """The query of the next page."""
        return {**self.query, "limit": PAGE_SIZE, "offset": len(self.items)}

    def add(self, body: Mapping[str, Any]) -> bool:
        """Take one page's answer; return whether every item has been read."""
        page = list(body.get(self.key) or ())
        self.items.extend(page)
        return not page or len(self.items) >= int(body.get("total_entries", 0))


class AirflowLoginError(httpx.HTTPError):
    """``POST /auth/token`` did not give a token; the message says who and why."""


class AirflowTokenAuth(httpx.Auth):
    """Bearer tokens from Airflow's ``/auth/token`` for one user, renewed before expiry and on refusal.

    ``token_url`` is the API server's base URL + ``/auth/token`` (see :meth:`for_server`).
    """

    requires_response_body = True

    def __init__(self, token_url: str, username: str, password: str, *, clock: Any = time.time) -> None:
        self.token_url = token_url
        self.username = username
        self._password = password
        self._clock = clock
        self.token: str | None = None
        self._expires: float | None = None

    @classmethod
    def for_server(cls, base_url: str, username: str, password: str) -> AirflowTokenAuth:
        """Auth for the API server at ``base_url`` (which may have a path prefix)."""
        return cls(base_url.rstrip("/") + TOKEN_PATH, username, password)

    def login_request(self) -> httpx.Request:
        """The token exchange, sent by the flow itself (so it works on sync and async clients)."""
        return httpx.Request(
            "POST", self.token_url, json={"username": self.username, "password": self._password}
        )

    def take_token(self, response: httpx.Response) -> str:
        """Keep the token from a login answer (raises :class:`AirflowLoginError` without one)."""
        token = None
        if response.is_success:
            try:
                token = response.json().get("access_token")
            except (ValueError, AttributeError):  # not a JSON object: reported below
                token = None
        if not isinstance(token, str) or not token:
            raise AirflowLoginError(
                f"Airflow at {self.token_url} gave no token for user {self.username!r}: "
                f"{response.status_code} {error_detail(response)}"
            )
        self.token, self._expires = token, token_expiry(token)
        return token

    def needs_login(self) -> bool:
        """No token yet, or one about to expire."""
        if self.token is None:
            return True
        return self._expires is not None and self._clock() >= self._expires - TOKEN_RENEW_MARGIN

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with a valid token; log in again once if Airflow refuses it."""
        fresh = False
        if self.needs_login():
            self.take_token((yield self.login_request()))
            fresh = True
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if fresh or not token_refused(response):
            return
        self.take_token((yield self.login_request()))
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class AirflowClient:
    """A synchronous, logged-in client of one Airflow API server (local stack, tests, benchmarks)."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.auth = AirflowTokenAuth.for_server(base_url, user, password)
        self.client = httpx.Client(base_url=base_url, timeout=timeout, auth=self.auth, transport=transport)
        try:
            self.login()
        except BaseException:
            self.client.close()
            raise

    def login(self) -> None:
        """Exchange the user and password for a token now: a wrong password fails here, not later."""
        self.auth.take_token(self.client.send(self.auth.login_request(), auth=None))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``GET`` one JSON object (raises :class:`httpx.HTTPStatusError` for an error status)."""
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return dict(response.json())

    def collect(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of the paged collection at ``path`` (the list under ``key``), page by page."""
        pages = Pages(key, params or {})
        while not pages.add(self.get_json(path, pages.params())):
            pass
        return pages.items

    def dag_ids(self) -> set[str]:
        """The DAGs Airflow has stored (the DAG processor parsed them), however many there are."""
        return {dag["dag_id"] for dag in self.collect(api_path("dags"), "dags")}

    def import_errors(self) -> dict[str, str]:
        """DAG files that do not import, as Airflow lists them: file name -> stack trace."""
        errors = self.collect(api_path("importErrors"), "import_errors")
        return {str(error["filename"]): str(error["stack_trace"]) for error in errors}

    def active_runs(self, dag_id: str) -> int:
        """How many runs of ``dag_id`` are queued or running."""
        body = self.get_json(
            api_path("dags", dag_id, "dagRuns"), {"state": ["queued", "running"], "limit": 1}
        )
        return int(body["total_entries"])

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id`` so its triggered runs start."""
        self.client.patch(api_path("dags", dag_id), json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run now; return its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        response = self.client.post(api_path("dags", dag_id, "dagRuns"), json=body)
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run as Airflow records it (state, start and end dates)."""
        return self.get_json(api_path("dags", dag_id, "dagRuns", run_id))

    def wait_terminal(self, dag_id: str, run_id: str, timeout: float, interval: float = 0.05) -> str:
        """Poll the run until success/failed (or ``timeout``); return the last state seen."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in TERMINAL_STATES:
                return state
            time.sleep(interval)
        return f"timeout({state})"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included."""
        return self.collect(api_path("dags", dag_id, "dagRuns", run_id, "taskInstances"), "task_instances")

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The ``return_value`` of one task instance."""
        path = api_path(
            "dags", dag_id, "dagRuns", run_id, "taskInstances", task_id, "xcomEntries", "return_value"
        )
        return self.get_json(path, {"map_index": map_index, "deserialize": True})["value"]

    def tasks(self, dag_id: str) -> dict[str, list[str]]:
        """task_id -> downstream task ids."""
        body = self.get_json(api_path("dags", dag_id, "tasks"))
        return {t["task_id"]: list(t["downstream_task_ids"]) for t in body["tasks"]}
