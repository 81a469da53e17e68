"""Fixtures and tools for the worker-side fault tests: a stack, spare workers, a cuttable proxy.

Each scenario gets worker processes of its own (real ``airflow-knative worker``
processes, each in its own process group like a pod's container) and a service of
its own in the stack's routing file, so killing them leaves the shared stack intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.config import StackConfig
from airflow_knative.local.processes import wait_until
from airflow_knative.local.stack import LocalStack
from airflow_knative.routing import ServiceEntry, load_routing_table, write_routing_table
from tests.conftest import free_port
from tests.e2e.conftest import AUTH, stack_config, start_spare_worker
from tests.faults.conftest import FIGURES_FILE
from tests.metrics_readers import StatsdListener, airflow_statsd_env

#: Seconds without a task heartbeat before Airflow fails the task (Airflow's default is 300).
HEARTBEAT_TIMEOUT = 15
#: Where the measured recovery times are appended (one JSON object per line).

NAP_DAG = """
import json
import os
import time
from datetime import timedelta

from airflow.sdk import dag, task


def mark(path, event, **fields):
    record = {{"event": event, "t": time.time(), "pid": os.getpid(), "ppid": os.getppid(), **fields}}
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\\n")


@dag(
    dag_id="{dag_id}",
    schedule=None,
    catchup=False,
    default_args={{"retries": 3, "retry_delay": timedelta(seconds=1)}},
)
def nap_dag():
    @task
    def nap(**context):
        conf = context["dag_run"].conf
        try_number = context["ti"].try_number
        mark(conf["marker"], "start", try_number=try_number)
        time.sleep(float(conf.get("sleep", 5)))
        mark(conf["marker"], "end", try_number=try_number)
        return "rested"

    nap()


nap_dag()
"""

DEADLINE_DAG = """
import json
import os
import time
from datetime import timedelta

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback, dag, task

MARKER = {marker!r}


def record_missed_deadline(**kwargs):
    with open(MARKER, "a") as out:
        out.write(json.dumps({{"event": "deadline_callback", "t": time.time(), "pid": os.getpid()}}) + "\\n")


@dag(
    dag_id="fault_deadline",
    schedule=None,
    catchup=False,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=1),
        callback=SyncCallback(record_missed_deadline),
    ),
)
def fault_deadline():
    @task
    def slow():
        time.sleep(6)
        return "late"

    slow()


fault_deadline()
"""

NAP_DAG_IDS = ("fault_pool_kill", "fault_worker_kill", "fault_dropped_stream", "fault_rtif_in_flight")


def write_fault_dags(folder: Path, deadline_marker: Path) -> None:
    """The DAGs of the fault scenarios (one per scenario, so each has a service of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    for dag_id in NAP_DAG_IDS:
        (folder / f"{dag_id}.py").write_text(NAP_DAG.format(dag_id=dag_id))
    (folder / "fault_deadline.py").write_text(DEADLINE_DAG.format(marker=str(deadline_marker)))


def record_figure(name: str, seconds: float, **details: Any) -> None:
    """Print a measured recovery time and append it to .run/faults/recovery.jsonl (with the others)."""
    figure = {"scenario": name, "seconds": round(seconds, 2), **details}
    print(f"FAULT-FIGURE {json.dumps(figure)}")
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps({"at": time.time(), **figure}) + "\n")


# -- the stack -----------------------------------------------------------------------------


@dataclass
class FaultStack:
    """The running stack, its Airflow API and where the scenarios leave their marks."""

    stack: LocalStack
    api: AirflowClient
    markers: Path
    deadline_marker: Path
    #: Receives the scheduler's StatsD metrics (the executor's knative_executor.*).
    statsd: StatsdListener

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def route(self, dag_id: str, task_id: str, url: str) -> None:
        """Serve ``dag_id.task_id`` from ``url`` (the executor re-reads the changed file)."""
        table = load_routing_table(self.config.routing_file)
        service = dag_id.replace("_", "-")
        table.services[service] = ServiceEntry(url=url)
        table.tasks[dag_id] = {task_id: service}
        write_routing_table(table, self.config.routing_file)

    def trigger(self, dag_id: str, **conf: Any) -> tuple[str, Path]:
        marker = self.markers / f"{dag_id}-{time.time_ns()}.jsonl"
        run_id = self.api.trigger(dag_id, {"marker": str(marker), **conf})
        return run_id, marker

    def scheduler_alive(self) -> bool:
        return (
            next(c for c in self.stack.processes.components if c.name == "scheduler").process.poll() is None
        )


def marks(path: Path) -> list[dict[str, Any]]:
    """The start/end records a task wrote."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_mark(
    path: Path, event: str, try_number: int | None = None, timeout: float = 120.0
) -> dict[str, Any]:
    """The first ``event`` record (of ``try_number``, if given) the task wrote."""

    def found() -> dict[str, Any] | None:
        return next(
            (m for m in marks(path) if m["event"] == event and try_number in (None, m.get("try_number"))),
            None,
        )

    result: dict[str, Any] = wait_until(found, timeout=timeout, interval=0.05)
    return result


def tries_that_ended(marker: Path, killed: dict[str, Any], task_seconds: float) -> list[int]:
    """The tries that wrote their end mark, read once the killed try would have ended had it lived."""
    time.sleep(max(0.0, killed["t"] + task_seconds + 1 - time.time()))
    return [m["try_number"] for m in marks(marker) if m["event"] == "end"]


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A local stack with the fault DAGs and a short task heartbeat timeout."""
    home = tmp_path_factory.mktemp("fault-stack")
    markers = home / "markers"
    markers.mkdir()
    deadline_marker = markers / "deadline-callback.jsonl"
    dags = home / "dags"
    write_fault_dags(dags, deadline_marker)
    config = stack_config(home, dags, workers=1, task_heartbeat_timeout=HEARTBEAT_TIMEOUT)
    stack = LocalStack(config)
    statsd = StatsdListener()
    with pytest.MonkeyPatch.context() as env:  # inherited by the scheduler
        for name, value in airflow_statsd_env(statsd.port).items():
            env.setenv(name, value)
        stack.start()
    try:
        with AirflowClient(config.api_url, *AUTH) as api:
            for dag_id in (*NAP_DAG_IDS, "fault_deadline"):
                api.unpause(dag_id)
            yield FaultStack(stack, api, markers, deadline_marker, statsd)
    finally:
        stack.stop()
        statsd.close()


# -- workers of a scenario's own -----------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``airflow-knative worker`` in its own process group, as a pod's container."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/healthz", timeout=5)

    def readiness(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=5).json()
        return body

    def pool_pids(self) -> list[int]:
        pids: list[int] = self.health().json()["pool"]["pids"]
        return pids

    def kill_container(self) -> None:
        """SIGKILL every process of the worker at once, as the kubelet does to an OOM-killed pod."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_container()


@pytest.fixture
def spawn_worker(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Any]:
    """Start workers for one test; every one is stopped when the test ends."""
    started: list[WorkerProcess] = []

    def spawn(name: str, concurrency: int = 1, execution_api_url: str | None = None) -> WorkerProcess:
        log_path = tmp_path / f"{name}.log"
        extra: tuple[str, ...] = ("--heartbeat-interval", "1")
        if execution_api_url is not None:
            extra += ("--execution-api-url", execution_api_url)
        process, url = start_spare_worker(fault_stack.config, name, log_path, concurrency, extra)
        worker = WorkerProcess(name, url, process, log_path)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


# -- a TCP proxy standing in for Knative's routing -----------------------------------------


@dataclass
class TcpProxy:
    """Forwards each connection to the first backend that accepts it; can cut every open one.

    Stands in for what sits between the executor and a pod in a cluster (Knative's
    activator and queue-proxy, a load balancer): it spreads connections over the
    live backends and it can drop a connection at any moment.
    """

    backends: list[str]
    port: int = field(default_factory=free_port)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def cut_all(self) -> int:
        """Abort every open connection (both sides); return how many were cut."""
        return asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    def stop(self) -> None:
        self.cut_all()
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> int:
        writers = list(self._open)
        for writer in writers:
            writer.transport.abort()
        self._open.clear()
        return len(writers) // 2

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in self.backends:
            host, port = backend.removeprefix("http://").rsplit(":", 1)
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                break
            except OSError:
                continue
        else:
            writer.transport.abort()
            return
        self._open.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._open.difference_update({writer, up_writer})

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            target.close()


@pytest.fixture
def proxy() -> Iterator[Any]:
    proxies: list[TcpProxy] = []

    def make(*backends: str) -> TcpProxy:
        started = TcpProxy(list(backends)).start()
        proxies.append(started)
        return started

    yield make
    for started in proxies:
        started.stop()


# -- an HTTP proxy in front of the Execution API, standing in for a slow API server ---------


class ExecutionApiProxy:
    """Forwards every request to the stack's API server, but holds rendered-fields writes while told to.

    Stands in for an API server that is slow to answer ``PUT /task-instances/{id}/rtif``
    (a busy database, a slow network): the real API server answers everything once
    :meth:`release` is called. Requests held so far are listed in :attr:`held`.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.held: list[str] = []
        self._released = threading.Event()
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def execution_api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/execution/"

    def start(self) -> ExecutionApiProxy:
        self._thread.start()
        wait_until(lambda: self._server.started, timeout=10, interval=0.02)
        return self

    def release(self) -> None:
        """Forward the held writes and every later one at once."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._server.should_exit = True
        self._thread.join(10)

    async def _forward(self, request: Request) -> Response:
        if request.method == "PUT" and request.url.path.endswith("/rtif") and not self._released.is_set():
            self.held.append(request.url.path)
            while not self._released.is_set():
                await asyncio.sleep(0.02)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        dropped = ("content-length", "content-encoding")  # httpx has decoded the body
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
        return Response(answer.content, status_code=answer.status_code, headers=passed)


@pytest.fixture
def api_proxy(fault_stack: FaultStack) -> Iterator[ExecutionApiProxy]:
    """A proxy in front of the stack's Execution API that holds rendered-fields writes until released."""
    started = ExecutionApiProxy(fault_stack.config.api_url).start()
    yield started
    started.stop()


def a_task_workload_body() -> bytes:
    """A valid dispatch request (a worker with a free slot would take it; one without answers 429)."""
    from airflow_knative.protocol import encode_dispatch_request
    from bench.workloads import build_workload

    return encode_dispatch_request(build_workload().model_dump_json(), [])
