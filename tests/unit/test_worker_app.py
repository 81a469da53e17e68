"""The worker's HTTP app: authenticate, validate, admit, stream accepted / heartbeats / finished.

The app runs in-process through Starlette's TestClient. Its task pool is a fake
whose futures the test completes: the real pool forks Airflow supervisors, which
the end-to-end tests exercise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any

import pytest
from starlette.testclient import TestClient

from airflow_knative.protocol import (
    SECRET_HEADER,
    STREAM_MEDIA_TYPE,
    WORKLOAD_PATH,
    DispatchRequest,
    InlineXCom,
    encode_dispatch_request,
)
from airflow_knative.worker.server import WorkerSettings, create_app
from airflow_knative.worker.task_pool import PoolStatus
from bench.workloads import WorkloadFactory

SECRET = "worker-unit-test-secret-0123456789"
API_URL = "http://api-server:8080/execution/"
#: Seconds after which the fake pool finishes a task the test left running.
SAFETY_NET = 5.0


class FakePool:
    """Stands in for TaskPool: hands out futures the test resolves.

    A future the test leaves pending is resolved after :data:`SAFETY_NET` seconds
    (state ``safety-net``), so a broken rule fails an assertion instead of hanging.
    """

    def __init__(self) -> None:
        self.warmed = False
        self.shut_down = False
        self.deaths = 0
        self.broken: str | None = None
        self.submitted: list[tuple[bytes, str, float]] = []
        self.futures: list[Future[dict[str, Any]]] = []
        self._timers: list[threading.Timer] = []
        self._submitted = threading.Condition()

    def start(self) -> list[int]:
        self.warmed = True
        return [101, 102]

    def status(self) -> PoolStatus:
        return PoolStatus(
            size=2, alive=2, busy=0, deaths=self.deaths, replacements=self.deaths, broken=self.broken
        )

    async def run(self, request_json: bytes, server: str, received_at: float) -> dict[str, Any]:
        return await asyncio.wrap_future(self.submit(request_json, server, received_at))

    def submit(self, request_json: bytes, server: str, received_at: float) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        timer = threading.Timer(SAFETY_NET, resolve_if_pending, (future, finished_dict(state="safety-net")))
        timer.daemon = True
        timer.start()
        with self._submitted:
            self.submitted.append((request_json, server, received_at))
            self.futures.append(future)
            self._timers.append(timer)
            self._submitted.notify_all()
        return future

    async def shutdown(self, timeout: float) -> None:
        self.shut_down = True

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def wait_submitted(self, count: int, timeout: float = 5.0) -> Future[dict[str, Any]]:
        with self._submitted:
            assert self._submitted.wait_for(lambda: len(self.futures) >= count, timeout), "not submitted"
            return self.futures[count - 1]


def resolve_if_pending(future: Future[dict[str, Any]], result: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidStateError):
        future.set_result(result)


def finished_dict(**fields: Any) -> dict[str, Any]:
    return {"exit_code": 0, "state": "success", "timings": {"received_at": time.time()}, **fields}


@pytest.fixture
def pool() -> Iterator[FakePool]:
    fake = FakePool()
    yield fake
    fake.cancel_timers()


@pytest.fixture
def make_client(pool: FakePool) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(*, concurrency: int = 2, heartbeat_interval: float = 0.02, lifespan: bool = True) -> TestClient:
        settings = WorkerSettings(
            name="worker-0",
            secret=SECRET,
            execution_api_url=API_URL,
            concurrency=concurrency,
            heartbeat_interval=heartbeat_interval,
        )
        client = TestClient(create_app(settings, pool))  # type: ignore[arg-type]
        if lifespan:
            client.__enter__()
            clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def body_for(make_workload: WorkloadFactory, inline: list[InlineXCom] | None = None) -> bytes:
    return encode_dispatch_request(make_workload().model_dump_json(), inline or [])


def auth(secret: str = SECRET) -> dict[str, str]:
    return {SECRET_HEADER: secret, "Content-Type": "application/json"}


def after_accepted(response: Any) -> Iterator[dict[str, Any]]:
    """Read the ``accepted`` event (the worker starts the job only once it is sent); return the rest."""
    stream = events(response.iter_lines())
    assert next(stream)["event"] == "accepted"
    return stream


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line:
            yield json.loads(line)


# -- refused before the task is taken --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {SECRET_HEADER: "wrong-secret-of-some-length"}, {SECRET_HEADER: SECRET[:-1]}, {SECRET_HEADER: ""}],
)
def test_missing_or_wrong_secret_is_401(
    make_client: Callable[..., TestClient],
    make_workload: WorkloadFactory,
    pool: FakePool,
    headers: dict[str, str],
) -> None:
    client = make_client()

    response = client.post(WORKLOAD_PATH, content=body_for(make_workload), headers=headers)

    assert response.status_code == 401
    assert SECRET_HEADER in response.json()["error"]
    assert pool.submitted == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "invalid workload"),
        (b'{"inline_xcoms": []}', "workload"),  # no workload
        (b'{"workload": {"type": "ExecuteTask"}, "inline_xcoms": []}', "invalid workload"),
        (b'{"workload": {"type": "Nonsense"}, "inline_xcoms": []}', "invalid workload"),
        (b'{"workload": {}, "inline_xcoms": [], "extra": 1}', "extra"),
    ],
)
def test_invalid_request_is_400_with_a_reason(
    make_client: Callable[..., TestClient], pool: FakePool, body: bytes, fragment: str
) -> None:
    client = make_client()

    response = client.post(WORKLOAD_PATH, content=body, headers=auth())

    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert pool.submitted == []


def test_workload_with_an_invalid_ti_is_400(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    workload = json.loads(make_workload().model_dump_json())
    workload["ti"]["try_number"] = "first"
    client = make_client()

    response = client.post(WORKLOAD_PATH, json={"workload": workload}, headers=auth())

    assert response.status_code == 400
    assert "try_number" in response.json()["error"]
    assert pool.submitted == []


def test_callback_workload_is_run_like_a_task(make_client: Callable[..., TestClient], pool: FakePool) -> None:
    """Deadline callbacks reach workers through the same path as tasks (the scheduler must not stop)."""
    callback = {
        "type": "ExecuteCallback",
        "token": "token",
        "dag_rel_path": "dags/x.py",
        "bundle_info": {"name": "dags-folder"},
        "log_path": None,
        "callback": {"id": "cb-1", "fetch_method": "import_path", "data": {"path": "x.alert"}},
    }
    client = make_client()

    with client.stream("POST", WORKLOAD_PATH, json={"workload": callback}, headers=auth()) as response:
        assert response.status_code == 200
        rest = after_accepted(response)
        pool.wait_submitted(1).set_result(finished_dict())
        last = list(rest)[-1]

    assert (last["event"], last["state"]) == ("finished", "success")
    assert json.loads(pool.submitted[0][0])["workload"]["type"] == "ExecuteCallback"


def test_trigger_workload_is_400(make_client: Callable[..., TestClient], pool: FakePool) -> None:
    """RunTrigger belongs to the triggerer; a worker refuses it before taking it."""
    client = make_client()

    response = client.post(WORKLOAD_PATH, json={"workload": {"type": "RunTrigger"}}, headers=auth())

    assert response.status_code == 400
    assert pool.submitted == []


def test_not_ready_worker_is_503_with_retry_after(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    """Before the pool is warm (lifespan not run) the worker refuses in a way the executor retries."""
    client = make_client(lifespan=False)

    response = client.post(WORKLOAD_PATH, content=body_for(make_workload), headers=auth())

    assert response.status_code == 503
    assert float(response.headers["Retry-After"]) > 0
    assert pool.submitted == []


def test_over_the_concurrency_limit_is_429_with_retry_after(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    client = make_client(concurrency=1)
    body = body_for(make_workload)

    with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as running:
        assert running.status_code == 200
        rest = after_accepted(running)
        future = pool.wait_submitted(1)

        refused = client.post(WORKLOAD_PATH, content=body, headers=auth())

        assert refused.status_code == 429
        assert float(refused.headers["Retry-After"]) > 0
        assert len(pool.submitted) == 1
        future.set_result(finished_dict())
        list(rest)

    # the slot is free again once the first task finished
    pool_count = len(pool.futures)
    with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as again:
        assert again.status_code == 200
        rest = after_accepted(again)
        pool.wait_submitted(pool_count + 1).set_result(finished_dict())
        list(rest)


# -- the task is taken ----------------------------------------------------------------------


def test_valid_workload_streams_accepted_heartbeats_finished(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    client = make_client(heartbeat_interval=0.01)
    body = body_for(make_workload, [InlineXCom(task_id="extract", value=[1, 2])])

    with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(STREAM_MEDIA_TYPE)
        stream = events(response.iter_lines())

        accepted = next(stream)
        assert accepted["event"] == "accepted"
        assert accepted["worker"] == "worker-0"
        assert [next(stream)["event"] for _ in range(3)] == ["heartbeat"] * 3  # the task still runs

        pool.wait_submitted(1).set_result(
            finished_dict(has_return_value=True, return_value={"mean": 2.5}, xcom_reads_inline=1)
        )
        rest = list(stream)

    assert {e["event"] for e in rest[:-1]} <= {"heartbeat"}
    last = rest[-1]
    assert last["event"] == "finished"
    assert last["exit_code"] == 0
    assert last["state"] == "success"
    assert last["has_return_value"] is True
    assert last["return_value"] == {"mean": 2.5}
    assert last["xcom_reads_inline"] == 1

    (submitted_body, server, _) = pool.submitted[0]
    assert server == API_URL
    assert DispatchRequest.model_validate_json(submitted_body).inline_xcoms == [
        InlineXCom(task_id="extract", map_index=-1, value=[1, 2])
    ]


def test_failed_task_is_streamed_as_finished_with_its_state(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    client = make_client()

    with client.stream("POST", WORKLOAD_PATH, content=body_for(make_workload), headers=auth()) as response:
        rest = after_accepted(response)
        pool.wait_submitted(1).set_result(
            finished_dict(exit_code=1, state="failed", error="ZeroDivisionError")
        )
        last = list(rest)[-1]

    assert (last["event"], last["exit_code"], last["state"]) == ("finished", 1, "failed")
    assert last["error"] == "ZeroDivisionError"


def test_pool_error_is_streamed_as_a_failed_finish(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    """A pool process that dies under the task still ends the stream with ``finished``."""
    client = make_client()

    with client.stream("POST", WORKLOAD_PATH, content=body_for(make_workload), headers=auth()) as response:
        rest = after_accepted(response)
        pool.wait_submitted(1).set_exception(RuntimeError("pool process died"))
        last = list(rest)[-1]

    assert last["event"] == "finished"
    assert last["exit_code"] != 0
    assert "pool process died" in last["error"]


# -- probes and lifecycle ------------------------------------------------------------------


def test_healthz_is_200(make_client: Callable[..., TestClient]) -> None:
    assert make_client().get("/healthz").status_code == 200


def test_healthz_reports_replaced_pool_processes(
    make_client: Callable[..., TestClient], pool: FakePool
) -> None:
    client = make_client()
    pool.deaths = 1

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["pool"]["deaths"] == 1


def test_broken_pool_fails_liveness_readiness_and_admission(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    """A worker that cannot run tasks says so, so Kubernetes restarts it and the executor goes elsewhere."""
    client = make_client()
    pool.broken = "cannot start a pool process: OSError"

    assert client.get("/healthz").status_code == 503
    assert client.get("/healthz").json()["pool"]["broken"] == pool.broken
    assert client.get("/readyz").status_code == 503
    refused = client.post(WORKLOAD_PATH, content=body_for(make_workload), headers=auth())
    assert refused.status_code == 503
    assert pool.submitted == []


def test_healthz_is_200_before_the_pool_is_warm(make_client: Callable[..., TestClient]) -> None:
    assert make_client(lifespan=False).get("/healthz").status_code == 200


def test_readyz_is_200_once_the_pool_is_warm(make_client: Callable[..., TestClient], pool: FakePool) -> None:
    response = make_client().get("/readyz")

    assert pool.warmed
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_503_before_the_pool_is_warm(make_client: Callable[..., TestClient]) -> None:
    assert make_client(lifespan=False).get("/readyz").status_code == 503


def test_shutdown_drains_and_stops_the_pool(make_client: Callable[..., TestClient], pool: FakePool) -> None:
    client = make_client(lifespan=False)
    with client:
        assert client.get("/readyz").status_code == 200
    assert pool.shut_down


def test_request_body_is_what_the_dispatcher_sends(
    make_client: Callable[..., TestClient], make_workload: WorkloadFactory, pool: FakePool
) -> None:
    """The executor's encode_dispatch_request body is accepted as is (no re-serialisation needed)."""
    client = make_client()
    workload = make_workload()
    body = encode_dispatch_request(workload.model_dump_json(), [])

    with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as response:
        assert response.status_code == 200
        rest = after_accepted(response)
        pool.wait_submitted(1).set_result(finished_dict())
        list(rest)

    assert pool.submitted[0][0] == body
    sent = json.loads(pool.submitted[0][0])
    assert sent["workload"]["ti"]["id"] == str(workload.ti.id)


# -- slots belong to tasks, not to streams (a real uvicorn server, so the connection can be cut) --


@pytest.fixture
def served_app(pool: FakePool) -> Iterator[str]:
    """The app behind a real uvicorn on a free port, with a concurrency of one."""
    import uvicorn

    from tests.conftest import free_port

    settings = WorkerSettings(
        name="worker-0", secret=SECRET, execution_api_url=API_URL, concurrency=1, heartbeat_interval=0.05
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, pool), host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_dropped_stream_keeps_the_slot_until_the_task_ends(
    served_app: str, make_workload: WorkloadFactory, pool: FakePool
) -> None:
    import httpx

    body = body_for(make_workload)
    with httpx.Client(base_url=served_app, timeout=10) as client:
        with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as running:
            assert next(events(running.iter_lines()))["event"] == "accepted"
            task = pool.wait_submitted(1)
        # the connection is closed here while the task still runs

        for _ in range(3):  # however often asked, and however long after the drop
            refused = client.post(WORKLOAD_PATH, content=body, headers=auth())
            assert refused.status_code == 429
            time.sleep(0.1)
        assert client.get("/readyz").json()["in_flight"] == 1

        task.set_result(finished_dict())
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["in_flight"] != 0:
            assert time.monotonic() < deadline, "slot not released after the task ended"
            time.sleep(0.01)
        with client.stream("POST", WORKLOAD_PATH, content=body, headers=auth()) as again:
            assert again.status_code == 200
            rest = after_accepted(again)
            pool.wait_submitted(2).set_result(finished_dict())
            assert list(rest)[-1]["event"] == "finished"
