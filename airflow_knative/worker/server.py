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
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

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
    encode_event,
)
from airflow_knative.settings import SettingsError, read_secret
from airflow_knative.worker.task_pool import TaskPool
from airflow_knative.worker.workloads import UnsupportedWorkloadError, parse_execute_task

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


@dataclass
class WorkerState:
    """Mutable state of one worker process, owned by the event loop."""

    settings: WorkerSettings
    pool: TaskPool
    in_flight: int = 0
    draining: bool = False
    ready: bool = False


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _admit(request: Request, state: WorkerState) -> tuple[bytes, DispatchRequest] | Response:
    """Check everything that can be checked before the task is taken; nothing here runs it."""
    supplied = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(supplied.encode(), state.settings.secret.encode()):
        return _error(401, f"missing or wrong {SECRET_HEADER} header")
    if state.draining or not state.ready:
        return _error(503, "worker is not ready or is shutting down", {"Retry-After": "1"})
    body = await request.body()
    try:
        dispatch = DispatchRequest.model_validate_json(body)
        parse_execute_task(dispatch.workload)
    except ValidationError as exc:
        return _error(400, f"invalid workload: {exc}")
    except UnsupportedWorkloadError as exc:
        return _error(400, str(exc))
    if state.in_flight >= state.settings.concurrency:
        return _error(429, f"worker runs {state.in_flight} tasks, its limit", {"Retry-After": "1"})
    return body, dispatch


async def _stream(
    state: WorkerState, body: bytes, dispatch: DispatchRequest, received_at: float
) -> AsyncIterator[bytes]:
    """Run the task in the pool and stream accepted / heartbeats / finished."""
    settings = state.settings
    ti = dispatch.workload["ti"]
    ids = {
        "dag_id": ti["dag_id"],
        "task_id": ti["task_id"],
        "run_id": ti["run_id"],
        "map_index": ti.get("map_index", -1),
        "try_number": ti.get("try_number"),
    }
    future = asyncio.wrap_future(state.pool.submit(body, settings.execution_api_url, received_at))
    log_event(log, "task_accepted", worker=settings.name, **ids)
    yield encode_event(AcceptedEvent(worker=settings.name, received_at=received_at))
    while True:
        done, _ = await asyncio.wait({future}, timeout=settings.heartbeat_interval)
        if done:
            break
        yield encode_event(HeartbeatEvent())
    try:
        finished = FinishedEvent.model_validate(future.result())
    except Exception as exc:  # the pool process died under the task
        finished = FinishedEvent.model_validate(
            {
                "exit_code": -1,
                "error": f"{type(exc).__name__}: {exc}",
                "timings": {"received_at": received_at},
            }
        )
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
    yield encode_event(finished)


async def run_workload(request: Request) -> Response:
    """``POST /v1/workloads``."""
    received_at = time.time()
    state: WorkerState = request.app.state.worker
    admitted = await _admit(request, state)
    if isinstance(admitted, Response):
        return admitted
    body, dispatch = admitted
    state.in_flight += 1

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in _stream(state, body, dispatch, received_at):
                yield chunk
        finally:
            state.in_flight -= 1

    return StreamingResponse(stream(), media_type=STREAM_MEDIA_TYPE)


async def liveness(request: Request) -> Response:
    """The process answers: Kubernetes need not restart it."""
    return JSONResponse({"status": "ok"})


async def readiness(request: Request) -> Response:
    """Ready once the pool is warm, and no longer once draining for shutdown."""
    state: WorkerState = request.app.state.worker
    if state.ready and not state.draining:
        return JSONResponse({"status": "ready", "in_flight": state.in_flight})
    return JSONResponse({"status": "not ready", "draining": state.draining}, status_code=503)


def create_app(settings: WorkerSettings, pool: TaskPool) -> Starlette:
    """Build the ASGI app; the pool is warmed before the first request is served."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pids = await asyncio.to_thread(pool.warm_up)
        state.ready = True
        log_event(log, "worker_ready", worker=settings.name, pool_pids=pids, pid=os.getpid())
        yield
        state.draining = True
        await asyncio.to_thread(pool.shutdown)

    state = WorkerState(settings=settings, pool=pool)
    app = Starlette(
        routes=[
            Route(WORKLOAD_PATH, run_workload, methods=["POST"]),
            Route(LIVENESS_PATH, liveness),
            Route(READINESS_PATH, readiness),
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

    pool = TaskPool(settings.concurrency)
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
