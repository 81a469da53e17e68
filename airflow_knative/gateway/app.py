"""The gateway's HTTP surface: a Starlette app in front of the Airflow API server.

Routes:

- ``POST /runWorkflow/{dag_id}`` (``?wait=false`` to answer 202 at once)
- ``GET /runs/{dag_id}/{run_id}``: a run's state, and its result once it ended
- ``GET /healthz``: liveness/readiness, no auth
- ``GET /metrics``: Prometheus metrics (counts and durations only), no auth

Every handler is async and shares one ``httpx.AsyncClient`` (made in the
lifespan), so any number of waiting calls cost sockets and timers, not threads.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_knative import prometheus
from airflow_knative.gateway import metrics
from airflow_knative.gateway.airflow_api import AirflowApi, AirflowSession, DagRunInfo
from airflow_knative.gateway.auth import (
    BasicCredentials,
    InvalidAuthorization,
    TokenCache,
    parse_basic_authorization,
)
from airflow_knative.gateway.errors import GatewayError, unauthorized
from airflow_knative.gateway.output import TERMINAL_RUN_STATES
from airflow_knative.gateway.settings import GatewaySettings
from airflow_knative.gateway.validation import (
    check_content_length,
    parse_wait,
    parse_workflow_input,
    read_limited,
)
from airflow_knative.gateway.workflow import ClientGone, WorkflowService, status_url

logger = logging.getLogger("airflow_knative.gateway")

#: Status logged (and sent to nobody) when the caller hung up while waiting, as nginx does.
CLIENT_CLOSED_REQUEST = 499

ENDPOINTS_HINT = (
    "endpoints: POST /runWorkflow/<dag_id>, GET /runs/<dag_id>/<run_id>, GET /healthz, GET /metrics"
)


@dataclass
class CallLog:
    """What the one summary log line of a workflow call reports."""

    user: str = "-"
    run_id: str = "-"
    state: str = "-"
    error: str = ""


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _workflows(request: Request) -> WorkflowService:
    workflows: WorkflowService = request.app.state.workflows
    return workflows


def _credentials(request: Request) -> BasicCredentials:
    """The caller's Basic credentials, or 401 with the Basic challenge."""
    try:
        credentials = parse_basic_authorization(request.headers.get("authorization"))
    except InvalidAuthorization as exc:
        raise unauthorized(str(exc)) from None
    client = request.client.host if request.client else ""
    return dataclasses.replace(credentials, client=client)


def _session(request: Request, log: CallLog) -> AirflowSession:
    credentials = _credentials(request)
    log.user = credentials.username
    return _workflows(request).session(credentials)


async def _answer_ended_or_current(
    request: Request, session: AirflowSession, dag_id: str, run_id: str
) -> Response:
    """Body for ``GET /runs/...``: the final answer once the run ended, else 202 and its state.

    202 (as ``?wait=false`` answers) tells a poller "accepted, not done yet"; only the
    final answer carries 200 (success) or 500 (the run failed).
    """
    workflows = _workflows(request)
    run = await workflows.current(session, dag_id, run_id)
    if run.state in TERMINAL_RUN_STATES:
        answer = await workflows.finished_answer(session, run)
        return JSONResponse(answer.body, status_code=answer.status)
    url = status_url(request.scope.get("root_path", ""), dag_id, run_id)
    return JSONResponse(
        {"dag_id": dag_id, "run_id": run.run_id, "state": run.state, "status_url": url},
        status_code=202,
        headers={"Location": url, "Retry-After": "1"},
    )


async def _run_workflow(request: Request, dag_id: str, log: CallLog) -> Response:
    """Validate, trigger and (unless ``?wait=false``) wait; errors are raised as GatewayError."""
    settings = _settings(request)
    workflows = _workflows(request)
    session = _session(request, log)
    wait = parse_wait(request.query_params.get("wait"))
    check_content_length(request.headers.get("content-length"), settings.max_body_bytes)
    data = parse_workflow_input(await read_limited(request.stream(), settings.max_body_bytes))

    run = await workflows.start(session, dag_id, data)
    metrics.RUNS_TRIGGERED.inc()
    log.run_id, log.state = run.run_id, run.state
    url = status_url(request.scope.get("root_path", ""), dag_id, run.run_id)
    if not wait:
        body = {"run_id": run.run_id, "dag_id": dag_id, "state": run.state, "status_url": url}
        return JSONResponse(body, status_code=202, headers={"Location": url})
    try:
        return await _wait_and_answer(request, session, run, url, log)
    except GatewayError as exc:  # the run exists: tell the caller where to find it
        for key, value in {"dag_id": dag_id, "run_id": run.run_id, "status_url": url}.items():
            exc.extra.setdefault(key, value)
        raise


async def _wait_and_answer(
    request: Request, session: AirflowSession, run: DagRunInfo, url: str, log: CallLog
) -> Response:
    """Wait for the triggered run; 504 with the status URL if it outlasts ``wait_timeout``."""
    settings = _settings(request)
    workflows = _workflows(request)
    with metrics.WAIT_DURATION.time():
        run, ended, last_error = await workflows.wait(session, run, request.is_disconnected)
    log.state = run.state
    if not ended:
        extra = {"dag_id": run.dag_id, "run_id": run.run_id, "state": run.state, "status_url": url}
        if last_error:
            extra["last_airflow_error"] = last_error
        raise GatewayError(
            504,
            f"run did not end within {settings.wait_timeout:g} s (--wait-timeout); it goes on in "
            "Airflow: poll status_url with the same credentials for its result",
            extra=extra,
        )
    answer = await workflows.finished_answer(session, run)
    return JSONResponse(answer.body, status_code=answer.status)


async def run_workflow(request: Request) -> Response:
    """``POST /runWorkflow/{dag_id}``: run the DAG with ``{"data": input}`` and answer its output."""
    dag_id: str = request.path_params["dag_id"]
    log = CallLog()
    started = time.perf_counter()
    try:
        response = await _run_workflow(request, dag_id, log)
    except GatewayError as exc:
        response = exc.response()
        log.error = exc.message
    except ClientGone:
        response = Response(status_code=CLIENT_CLOSED_REQUEST)
        log.error = "caller disconnected while waiting; the run goes on in Airflow"
    duration = time.perf_counter() - started
    metrics.REQUEST_DURATION.observe(duration)
    metrics.RESULTS.labels(metrics.result_outcome(response.status_code, log.run_id != "-", log.state)).inc()
    logger.info(
        "POST /runWorkflow/%s user=%s status=%d run_id=%s state=%s duration=%.3fs%s",
        dag_id,
        log.user,
        response.status_code,
        log.run_id,
        log.state,
        duration,
        f" error={log.error!r}" if log.error else "",
    )
    return response


async def run_status(request: Request) -> Response:
    """``GET /runs/{dag_id}/{run_id}``: where ``?wait=false`` and 504 answers send the caller."""
    dag_id: str = request.path_params["dag_id"]
    run_id: str = request.path_params["run_id"]
    try:
        return await _answer_ended_or_current(request, _session(request, CallLog()), dag_id, run_id)
    except GatewayError as exc:
        return exc.response()


async def healthz(request: Request) -> Response:
    """Knative's probes: the process serves; Airflow's health is not this probe's business."""
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such route or method) as JSON like every other error."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    message = f"{exc.detail}: {request.method} {request.url.path}; {ENDPOINTS_HINT}"
    return GatewayError(exc.status_code, message, headers=exc.headers).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A gateway bug: JSON for the caller; Starlette re-raises so the traceback is logged."""
    return GatewayError(
        500, f"internal gateway error ({type(exc).__name__}); see the gateway's log"
    ).response()


def create_app(settings: GatewaySettings) -> Starlette:
    """Build the gateway app; the Airflow client lives from startup to shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(
            max_connections=settings.airflow_max_connections,
            max_keepalive_connections=settings.airflow_max_connections,
        )
        async with httpx.AsyncClient(
            base_url=settings.airflow_url, timeout=httpx.Timeout(settings.airflow_timeout), limits=limits
        ) as http:
            api = AirflowApi(
                http=http,
                tokens=TokenCache(settings.token_ttl),
                max_concurrent_logins=max(1, settings.airflow_max_connections // 2),
            )
            app.state.workflows = WorkflowService(api, settings)
            yield

    app = Starlette(
        routes=[
            Route("/runWorkflow/{dag_id}", run_workflow, methods=["POST"]),
            Route("/runs/{dag_id}/{run_id:path}", run_status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route(prometheus.METRICS_PATH, prometheus.metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
