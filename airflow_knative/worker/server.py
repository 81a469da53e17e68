"""The worker's HTTP server: authenticate, validate, admit, run, stream the outcome.

Streaming keeps one request open for the whole task: ``accepted`` tells the
executor it must not resend, heartbeats keep Knative's queue-proxy and any other
proxy from cutting a long task, and ``finished`` carries the state and the
return value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_knative import prometheus
from airflow_knative.events import log_event
from airflow_knative.protocol import (
    LIVENESS_PATH,
    READINESS_PATH,
    SECRET_HEADER,
    STREAM_MEDIA_TYPE,
    WORKLOAD_PATH,
    AcceptedEvent,
    DispatchRequest,
    FinishedEvent,
    HeartbeatEvent,
    TaskTimings,
    encode_event,
)
from airflow_knative.settings import SettingsError, read_secret
from airflow_knative.worker import metrics
from airflow_knative.worker.task_pool import PoolStatus, TaskPool
from airflow_knative.worker.workloads import UnsupportedWorkloadError, parse_workload, workload_ids

log = logging.getLogger("airflow_knative.worker")

SECRET_ENV = "AIRFLOW_KNATIVE_SECRET"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to run tasks."""

    name: str
    secret: str
    execution_api_url: str
    concurrency: int
    heartbeat_interval: float
    grace_period: float = 300.0


class Pool(Protocol):
    """What the server needs of its task pool (:class:`TaskPool`; unit tests pass a fake)."""

    def start(self) -> list[int]:
        """Fork the pool processes; return their pids."""

    async def run(self, request_json: bytes, server: str, received_at: float) -> dict[str, Any]:
        """Run one workload to its end; return a FinishedEvent dict."""

    async def shutdown(self, timeout: float) -> None:
        """Let running workloads finish within ``timeout``, then stop."""

    def status(self) -> PoolStatus:
        """The pool's health, for the probes."""


@dataclass
class WorkerState:
    """Mutable state of one worker process, owned by the event loop.

    ``in_flight`` counts slots: taken when a workload is admitted, given back when
    its task process has ended (or when it never started because the stream died
    before ``accepted``), never merely because a stream was dropped.
    """

    settings: WorkerSettings
    pool: Pool
    in_flight: int = 0
    draining: bool = False
    ready: bool = False
    jobs: set[asyncio.Task[FinishedEvent]] = field(default_factory=set)


class Slot:
    """One admitted workload's claim on a concurrency slot, released exactly once."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state
        self._held = True
        self._owned_by_job = False
        state.in_flight += 1

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if self._held:
            self._held = False
            self._state.in_flight -= 1

    def run_job(self, job: Coroutine[Any, Any, FinishedEvent]) -> asyncio.Task[FinishedEvent]:
        """Start the workload's job; from now on the slot is released when the job ends, not the stream."""
        task = asyncio.get_running_loop().create_task(job)
        self._state.jobs.add(task)
        metrics.TASKS_RUNNING.inc()

        def done(finished: asyncio.Task[FinishedEvent]) -> None:
            self._state.jobs.discard(finished)
            metrics.TASKS_RUNNING.dec()
            self.release()

        task.add_done_callback(done)
        self._owned_by_job = True
        return task

    @property
    def owned_by_job(self) -> bool:
        """True once a job holds the slot."""
        return self._owned_by_job


class SlotStreamingResponse(StreamingResponse):
    """A stream that gives its slot back if it ends before the job started.

    Starlette may never start the body iterator (the client left before the
    response began), so the generator's ``finally`` cannot be trusted to do it.
    """

    def __init__(self, content: AsyncIterator[bytes], slot: Slot, received_at: float) -> None:
        super().__init__(content, media_type=STREAM_MEDIA_TYPE)
        self.slot = slot
        self.received_at = received_at

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve the stream; release the slot afterwards unless a job holds it."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            metrics.REQUEST_DURATION.observe(time.time() - self.received_at)
            if not self.slot.owned_by_job:
                self.slot.release()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _refuse(reason: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer before 'accepted', counted by ``reason`` (see metrics.REFUSAL_REASONS)."""
    metrics.TASKS_REFUSED.labels(reason).inc()
    return _error(status, message, headers)


async def _admit(  # noqa: PLR0911  # one return per refusal reads best
    request: Request, state: WorkerState
) -> tuple[bytes, DispatchRequest, Any] | Response:
    """Check everything that can be checked before the task is taken; nothing here runs it."""
    supplied = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(supplied.encode(), state.settings.secret.encode()):
        return _refuse("unauthorized", 401, f"missing or wrong {SECRET_HEADER} header")
    if state.draining or not state.ready:
        return _refuse("not_ready", 503, "worker is not ready or is shutting down", {"Retry-After": "1"})
    body = await request.body()
    try:
        dispatch = DispatchRequest.model_validate_json(body)
        workload = parse_workload(dispatch.workload)
    except ValidationError as exc:
        return _refuse("invalid_workload", 400, f"invalid workload: {exc}")
    except UnsupportedWorkloadError as exc:
        return _refuse("invalid_workload", 400, str(exc))
    if not state.pool.status().healthy:
        return _refuse(
            "pool_broken", 503, "worker's task pool is broken; waiting to be restarted", {"Retry-After": "1"}
        )
    if state.in_flight >= state.settings.concurrency:
        return _refuse(
            "at_capacity", 429, f"worker runs {state.in_flight} tasks, its limit", {"Retry-After": "1"}
        )
    return body, dispatch, workload


async def _run_job(state: WorkerState, body: bytes, received_at: float, ids: dict[str, Any]) -> FinishedEvent:
    """Run the workload in the pool to its end, whatever happens to the stream; log the outcome."""
    settings = state.settings
    try:
        finished = FinishedEvent.model_validate(
            await state.pool.run(body, settings.execution_api_url, received_at)
        )
    except Exception as exc:  # the pool process died under the task, or no pool process is left
        finished = FinishedEvent(
            exit_code=-1,
            error=f"{type(exc).__name__}: {exc}",
            timings=TaskTimings(received_at=received_at, finished_at=time.time()),
        )
    finished_state = finished.state or "error"
    metrics.TASKS_FINISHED.labels(finished_state).inc()
    metrics.TASK_DURATION.labels(finished_state).observe(time.time() - received_at)
    log_event(
        log,
        "task_finished",
        worker=settings.name,
        state=finished.state,
        exit_code=finished.exit_code,
        xcom_reads_inline=finished.xcom_reads_inline,
        xcom_reads_api=finished.xcom_reads_api,
        timings=finished.timings.model_dump(),
        error=finished.error,
        **ids,
    )
    return finished


async def _stream(
    state: WorkerState, body: bytes, workload: Any, received_at: float, slot: Slot
) -> AsyncIterator[bytes]:
    """Stream accepted / heartbeats / finished; the job starts only once ``accepted`` is sent.

    Starting after ``accepted`` means a stream that breaks before it has started
    nothing, so the executor may safely send the workload again.
    """
    settings = state.settings
    ids = workload_ids(workload)
    log_event(log, "task_accepted", worker=settings.name, **ids)
    metrics.TASKS_ACCEPTED.inc()
    yield encode_event(AcceptedEvent(worker=settings.name, received_at=received_at))
    job = slot.run_job(_run_job(state, body, received_at, ids))
    while True:
        done, _ = await asyncio.wait({job}, timeout=settings.heartbeat_interval)
        if done:
            break
        yield encode_event(HeartbeatEvent())
    yield encode_event(job.result())


async def run_workload(request: Request) -> Response:
    """``POST /v1/workloads``."""
    received_at = time.time()
    metrics.TASKS_RECEIVED.inc()
    state: WorkerState = request.app.state.worker
    admitted = await _admit(request, state)
    if isinstance(admitted, Response):
        metrics.REQUEST_DURATION.observe(time.time() - received_at)
        return admitted
    body, _, workload = admitted
    slot = Slot(state)
    return SlotStreamingResponse(_stream(state, body, workload, received_at, slot), slot, received_at)


async def liveness(request: Request) -> Response:
    """Alive while the worker can run tasks; an unrepairable pool fails it, so Kubernetes restarts us."""
    state: WorkerState = request.app.state.worker
    pool = state.pool.status()
    body = {"status": "ok" if pool.healthy else "broken", "pool": dataclasses.asdict(pool)}
    return JSONResponse(body, status_code=200 if pool.healthy else 503)


async def readiness(request: Request) -> Response:
    """Ready once the pool is warm, and no longer once draining for shutdown."""
    state: WorkerState = request.app.state.worker
    if state.ready and not state.draining and state.pool.status().healthy:
        return JSONResponse({"status": "ready", "in_flight": state.in_flight})
    return JSONResponse({"status": "not ready", "draining": state.draining}, status_code=503)


def create_app(settings: WorkerSettings, pool: Pool) -> Starlette:
    """Build the ASGI app; the pool is warmed before the first request is served."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pids = pool.start()  # on the loop's (main) thread: see TaskPool
        state.ready = True
        log_event(log, "worker_ready", worker=settings.name, pool_pids=pids, pid=os.getpid())
        yield
        state.draining = True
        await pool.shutdown(settings.grace_period)

    state = WorkerState(settings=settings, pool=pool)
    metrics.POOL.watch(pool.status)
    app = Starlette(
        routes=[
            Route(WORKLOAD_PATH, run_workload, methods=["POST"]),
            Route(LIVENESS_PATH, liveness),
            Route(READINESS_PATH, readiness),
            Route(prometheus.METRICS_PATH, prometheus.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.worker = state
    return app


def load_worker_settings(args: argparse.Namespace) -> WorkerSettings:
    """Resolve options, secrets and the Execution API URL; fail fast with a clear message."""
    secret = os.environ.get(SECRET_ENV, "").strip()
    if args.secret_file:
        secret = read_secret(Path(args.secret_file), what="worker --secret-file")
    if len(secret) < 16:
        raise SettingsError(
            f"worker needs the executor's shared secret (16+ characters): pass --secret-file "
            f"or set AIRFLOW_KNATIVE_SECRET_FILE or {SECRET_ENV}"
        )
    if args.concurrency < 1:
        raise SettingsError(f"worker --concurrency must be at least 1, got {args.concurrency}")
    api_url = args.execution_api_url
    if not api_url:
        from airflow.executors.base_executor import get_execution_api_server_url

        api_url = get_execution_api_server_url()
    return WorkerSettings(
        name=args.name,
        secret=secret,
        execution_api_url=api_url,
        concurrency=args.concurrency,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
    )


def serve(args: argparse.Namespace) -> int:
    """Import Airflow, fork the pool, serve until SIGTERM, then drain within the grace period."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_worker_settings(args)
    # Warm: paid once here, inherited by every pool process and task process through fork.
    # The task process parses its DAG file with the DagBag: without this import each task
    # pays about a second of CPU for it.
    import airflow.dag_processing.dagbag
    import airflow.sdk.execution_time.supervisor
    import airflow.sdk.execution_time.task_runner  # noqa: F401

    from airflow_knative.worker import shared_type_adapters

    shared_type_adapters.install()
    pool = TaskPool(settings.concurrency, name=settings.name)
    app = create_app(settings, pool)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=int(args.grace_period),
    )
    DrainingServer(config, app.state.worker).run()
    return 0


class DrainingServer(uvicorn.Server):
    """Uvicorn, but a stop signal first marks the worker as draining.

    From that moment new workloads get 503 (which the executor retries on another
    pod) and readiness fails, while uvicorn's graceful shutdown lets the streams of
    running tasks finish within ``--grace-period``.
    """

    def __init__(self, config: uvicorn.Config, state: WorkerState) -> None:
        super().__init__(config)
        self.worker_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start draining, then let uvicorn shut down gracefully."""
        if not self.worker_state.draining:
            log_event(
                log,
                "worker_draining",
                worker=self.worker_state.settings.name,
                in_flight=self.worker_state.in_flight,
            )
        self.worker_state.draining = True
        super().handle_exit(sig, frame)
