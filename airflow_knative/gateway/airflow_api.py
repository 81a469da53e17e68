"""A small typed async client for the parts of the Airflow 3 REST API (v2) the gateway uses.

Built on the shared REST layer (airflow_knative/airflow_rest.py: paths, paging, the
token-refusal rule and an :class:`httpx.Auth` token flow). Every call is made on
behalf of one caller: :meth:`AirflowApi.as_user` binds the caller's Basic
credentials, which :class:`CallerTokenAuth` exchanges for a token (``POST
/auth/token``), cached per caller. When Airflow refuses a cached token (401 when
expired, 403 "Invalid JWT token" after its secret changed) the token is dropped and
the exchange retried once.

Errors are raised as :class:`AirflowApiError` subclasses that say what was being
done, so the web layer can map them to status codes without knowing httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from airflow_knative.airflow_rest import TOKEN_PATH, AirflowTokenAuth, Pages, api_path, token_refused
from airflow_knative.airflow_rest import error_detail as _detail
from airflow_knative.gateway.auth import BasicCredentials, CacheKey, TokenCache
from airflow_knative.gateway.login_guard import LoginGuard

#: XCom reads of one mapped task in flight at once.
XCOM_READ_CONCURRENCY = 16


# --------------------------------------------------------------------------- errors


class AirflowApiError(Exception):
    """A call to the Airflow API did not give the answer the gateway needs."""


class AirflowUnreachable(AirflowApiError):
    """No HTTP answer from Airflow at all (connection refused, DNS, timeout)."""

    def __init__(self, url: str, cause: Exception) -> None:
        self.url = url
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot reach the Airflow API server at {url}: {reason}")


class CredentialsRejected(AirflowApiError):
    """Airflow refused the caller's user and password, or the token they bought."""


class LoginsThrottled(AirflowApiError):
    """Too many failed logins from this client or for this user: not asking Airflow for now."""

    def __init__(self, retry_after: float, username: str) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many failed logins from this address or for user {username!r}; "
            f"try again in {retry_after:g} s"
        )


class AirflowForbidden(AirflowApiError):
    """The caller's Airflow user may not do this (Airflow answered 403)."""


class AirflowNotFound(AirflowApiError):
    """The DAG, run, task or XCom does not exist (Airflow answered 404)."""


class AirflowBadResponse(AirflowApiError):
    """Airflow answered with a status or body the gateway cannot use."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"Airflow answered {status} to '{what}': {detail}")


def is_transient(exc: AirflowApiError) -> bool:
    """Whether trying again later may succeed: no answer, overload (429) or a server error (5xx)."""
    if isinstance(exc, AirflowUnreachable):
        return True
    return isinstance(exc, AirflowBadResponse) and (exc.status >= 500 or exc.status == 429)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DagInfo:
    """The part of ``GET /dags/{dag_id}`` the gateway uses."""

    dag_id: str
    is_paused: bool


@dataclass(frozen=True)
class DagRunInfo:
    """The part of a DAG run the gateway uses."""

    dag_id: str
    run_id: str
    state: str


@dataclass(frozen=True)
class TaskInfo:
    """One task of a DAG, as listed by ``GET /dags/{dag_id}/tasks``."""

    task_id: str
    downstream_task_ids: tuple[str, ...] = ()
    is_mapped: bool = False


@dataclass(frozen=True)
class TaskInstanceInfo:
    """One task instance of a run (one per map index for mapped tasks)."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int = 0


@dataclass(frozen=True)
class XComValue:
    """A task instance's return value; ``found`` is false when it pushed none."""

    found: bool
    value: Any = None


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object in a successful answer; anything else is a bad response."""
    try:
        body = response.json()
    except ValueError as exc:
        raise AirflowBadResponse(what, response.status_code, "body is not JSON") from exc
    if not isinstance(body, dict):
        raise AirflowBadResponse(what, response.status_code, "body is not a JSON object")
    return body


def _run_info(body: Mapping[str, Any], what: str) -> DagRunInfo:
    try:
        return DagRunInfo(
            dag_id=str(body["dag_id"]), run_id=str(body["dag_run_id"]), state=str(body["state"])
        )
    except KeyError as exc:
        raise AirflowBadResponse(what, 200, f"DAG run without {exc}") from exc


def _task_info(body: Mapping[str, Any]) -> TaskInfo:
    return TaskInfo(
        task_id=str(body["task_id"]),
        downstream_task_ids=tuple(body.get("downstream_task_ids") or ()),
        is_mapped=bool(body.get("is_mapped")),
    )


def _task_instance_info(body: Mapping[str, Any]) -> TaskInstanceInfo:
    return TaskInstanceInfo(
        task_id=str(body["task_id"]),
        map_index=int(body.get("map_index", -1)),
        state=body.get("state"),
        try_number=int(body.get("try_number") or 0),
    )


def task_log_path(dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> str:
    """The REST path that returns one attempt's task log (``GET``, with an Airflow token)."""
    path = api_path("dags", dag_id, "dagRuns", run_id, "taskInstances", task_id, "logs", try_number)
    return f"{path}?map_index={map_index}"


# --------------------------------------------------------------------------- client


@dataclass
class AirflowApi:
    """Shared by all requests: one connection pool, one token cache.

    ``http`` must have the Airflow API server's URL as ``base_url``.
    """

    http: httpx.AsyncClient
    tokens: TokenCache
    #: Negative cache and failure limits for logins (see login_guard.py).
    guard: LoginGuard = field(default_factory=LoginGuard)
    #: Logins in flight at once; keep it below the connection limit so callers with a
    #: cached token always find a free Airflow connection.
    max_concurrent_logins: int = 5
    _exchanges: dict[CacheKey, asyncio.Future[str]] = field(default_factory=dict, init=False)
    _login_slots: asyncio.Semaphore | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        """The Airflow API server's URL, for error messages."""
        return str(self.http.base_url).rstrip("/")

    def as_user(self, credentials: BasicCredentials) -> AirflowSession:
        """Return a client acting as the caller identified by ``credentials``."""
        return AirflowSession(self, credentials)

    async def token(self, credentials: BasicCredentials) -> tuple[str, bool]:
        """Return ``(token, from_cache)`` for ``credentials``, exchanging them if needed.

        Concurrent calls for the same credentials share one exchange, so a burst of
        requests from one user costs Airflow one login, not one per request.
        """
        key = credentials.cache_key
        cached = self.tokens.get(key)
        if cached is not None:
            return cached, True
        verdict = self.guard.check(credentials, credentials.client)
        if verdict.rejected:
            raise CredentialsRejected(
                f"Airflow rejected the credentials of user {credentials.username!r} "
                f"(a moment ago; not asked again for {self.guard.rejected_ttl:g} s)"
            )
        if verdict.retry_after is not None:
            raise LoginsThrottled(verdict.retry_after, credentials.username)
        pending = self._exchanges.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._exchange(credentials))
            self._exchanges[key] = pending
            pending.add_done_callback(lambda done: self._exchange_done(key, done))
        # shield: one caller giving up must not cancel the exchange others wait for.
        return await asyncio.shield(pending), False

    def _exchange_done(self, key: CacheKey, done: asyncio.Future[str]) -> None:
        self._exchanges.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here so an exchange nobody awaits any more logs nothing

    async def _exchange(self, credentials: BasicCredentials) -> str:
        """``POST /auth/token``: the caller's user and password for an API token."""
        what = f"log in as {credentials.username}"
        body = {"username": credentials.username, "password": credentials.password}
        if self._login_slots is None:
            self._login_slots = asyncio.Semaphore(max(1, self.max_concurrent_logins))
        async with self._login_slots:
            response = await self.send("POST", TOKEN_PATH, what, json=body)
        if response.status_code in (400, 401, 403):
            self.guard.failed(credentials, credentials.client)
            raise CredentialsRejected(f"Airflow rejected the credentials of user {credentials.username!r}")
        self.guard.succeeded(credentials)
        if response.status_code not in (200, 201):
            raise AirflowBadResponse(what, response.status_code, _detail(response))
        token = _json_object(response, what).get("access_token")
        if not isinstance(token, str) or not token:
            raise AirflowBadResponse(what, response.status_code, "no access_token in the answer")
        self.tokens.put(credentials.cache_key, token)
        return token

    async def send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        auth: httpx.Auth | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; transport failures become :class:`AirflowUnreachable`."""
        try:
            return await self.http.request(method, path, json=json, params=params, auth=auth)
        except httpx.TransportError as exc:
            raise AirflowUnreachable(self.base_url, exc) from exc


class CallerTokenAuth(AirflowTokenAuth):
    """The shared token flow, with the caller's token from the gateway's cache and login guard.

    The exchange is shared by concurrent calls and throttled (:meth:`AirflowApi.token`),
    which needs awaiting: so this auth serves :class:`httpx.AsyncClient` only.
    """

    def __init__(self, api: AirflowApi, credentials: BasicCredentials) -> None:
        super().__init__(api.base_url + TOKEN_PATH, credentials.username, credentials.password)
        self.api = api
        self.credentials = credentials

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Not for sync clients: the gateway's token exchange is shared between coroutines."""
        raise RuntimeError("CallerTokenAuth serves httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send with the caller's token; a refused cached token is dropped and exchanged again once."""
        token, cached = await self.api.token(self.credentials)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if cached and token_refused(response):
            self.api.tokens.drop(self.credentials.cache_key, token)
            token, _ = await self.api.token(self.credentials)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


@dataclass(frozen=True)
class AirflowSession:
    """The Airflow API as seen by one caller."""

    api: AirflowApi
    credentials: BasicCredentials

    async def authenticate(self) -> None:
        """Make sure the caller's credentials buy a token (raises :class:`CredentialsRejected`)."""
        await self.api.token(self.credentials)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send with the caller's token (:class:`CallerTokenAuth`); map error statuses to exceptions."""
        auth = CallerTokenAuth(self.api, self.credentials)
        response = await self.api.send(method, path, what, auth=auth, json=json, params=params)
        if response.is_success:
            return response
        if token_refused(response):
            raise CredentialsRejected(f"Airflow refused the token of user {self.credentials.username!r}")
        if response.status_code == 403:
            raise AirflowForbidden(
                f"Airflow user {self.credentials.username!r} may not {what}: {_detail(response)}"
            )
        if response.status_code == 404:
            raise AirflowNotFound(f"{what}: {_detail(response)}")
        raise AirflowBadResponse(what, response.status_code, _detail(response))

    async def get_dag(self, dag_id: str) -> DagInfo:
        """``GET /dags/{dag_id}`` (raises :class:`AirflowNotFound` for an unknown DAG)."""
        what = f"read DAG {dag_id}"
        body = _json_object(await self._call("GET", api_path("dags", dag_id), what), what)
        return DagInfo(dag_id=str(body.get("dag_id", dag_id)), is_paused=bool(body.get("is_paused")))

    async def unpause_dag(self, dag_id: str) -> None:
        """``PATCH /dags/{dag_id}``: a paused DAG's runs would stay queued forever."""
        await self._call(
            "PATCH",
            api_path("dags", dag_id),
            f"unpause DAG {dag_id}",
            json={"is_paused": False},
            params={"update_mask": "is_paused"},
        )

    async def trigger_run(self, dag_id: str, conf: Mapping[str, Any]) -> DagRunInfo:
        """``POST /dags/{dag_id}/dagRuns``: a manual run now (``logical_date`` null) with ``conf``."""
        what = f"trigger DAG {dag_id}"
        response = await self._call(
            "POST",
            api_path("dags", dag_id, "dagRuns"),
            what,
            json={"logical_date": None, "conf": dict(conf)},
        )
        return _run_info(_json_object(response, what), what)

    async def get_run(self, dag_id: str, run_id: str) -> DagRunInfo:
        """``GET /dags/{dag_id}/dagRuns/{run_id}``."""
        what = f"read run {run_id} of DAG {dag_id}"
        path = api_path("dags", dag_id, "dagRuns", run_id)
        return _run_info(_json_object(await self._call("GET", path, what), what), what)

    async def list_tasks(self, dag_id: str) -> list[TaskInfo]:
        """``GET /dags/{dag_id}/tasks``: every task with its downstream ids."""
        what = f"list the tasks of DAG {dag_id}"
        body = _json_object(await self._call("GET", api_path("dags", dag_id, "tasks"), what), what)
        return [_task_info(task) for task in body.get("tasks") or ()]

    async def list_task_instances(
        self, dag_id: str, run_id: str, *, task_id: str | None = None, states: Iterable[str] = ()
    ) -> list[TaskInstanceInfo]:
        """Every task instance of a run (all pages), optionally of one task or in some states."""
        what = f"list the task instances of run {run_id} of DAG {dag_id}"
        path = api_path("dags", dag_id, "dagRuns", run_id, "taskInstances")
        query: dict[str, Any] = {"order_by": "map_index"}
        if task_id is not None:
            query["task_id"] = task_id
        if states := list(states):
            query["state"] = states
        pages = Pages("task_instances", query)
        while not pages.add(_json_object(await self._call("GET", path, what, params=pages.params()), what)):
            pass
        return [_task_instance_info(ti) for ti in pages.items]

    async def get_return_value(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> XComValue:
        """The ``return_value`` XCom of one task instance, as stored (JSON, no stringify)."""
        what = f"read the return value of task {task_id}[{map_index}] in run {run_id} of DAG {dag_id}"
        path = api_path(
            "dags", dag_id, "dagRuns", run_id, "taskInstances", task_id, "xcomEntries", "return_value"
        )
        try:
            response = await self._call("GET", path, what, params={"map_index": map_index})
        except AirflowNotFound:
            return XComValue(found=False)
        return XComValue(found=True, value=_json_object(response, what).get("value"))

    async def get_task_log(self, ti: TaskInstanceInfo, dag_id: str, run_id: str) -> list[Any]:
        """One attempt's log as Airflow serves it: a list of structured entries (or text lines)."""
        what = f"read the log of task {ti.task_id}[{ti.map_index}] in run {run_id} of DAG {dag_id}"
        path, _, query = task_log_path(dag_id, run_id, ti.task_id, ti.try_number, ti.map_index).partition("?")
        params = dict(item.split("=", 1) for item in query.split("&"))
        response = await self._call("GET", path, what, params={**params, "full_content": "true"})
        content = _json_object(response, what).get("content")
        if isinstance(content, list):
            return content
        return str(content or "").splitlines()

    async def get_return_values(
        self, dag_id: str, run_id: str, task_id: str, map_indexes: Iterable[int]
    ) -> list[XComValue]:
        """Return values of several instances of a mapped task, in the order given."""
        limit = asyncio.Semaphore(XCOM_READ_CONCURRENCY)

        async def read(map_index: int) -> XComValue:
            async with limit:
                return await self.get_return_value(dag_id, run_id, task_id, map_index)

        return list(await asyncio.gather(*(read(index) for index in map_indexes)))
