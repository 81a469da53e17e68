"""Scale to zero on the local stack: Knative's activator, for worker processes.

In a cluster a service with no pod still has an address: Knative's activator
takes the request, asks the autoscaler for a pod, holds the request until the pod
is ready and then forwards it. After an idle period the pod goes away again.
This module does the same with local processes, so the local stack pays (and the
benchmarks measure) cold starts the way a cluster does:

- every service answers at ``http://<activator>/services/<service>/...`` (the
  routing table's ``url_template``);
- the first request for a service with no worker starts ``airflow-knative worker``
  for it and is held until the worker's readiness path answers 200;
- with ``max_starting`` set, at most that many workers start at once, a start a
  task waits for first, then pre-warms nearest first
  (:mod:`airflow_knative.local.start_queue`); by default all start at once;
- a worker that has served nothing for ``idle_timeout`` seconds is stopped
  (SIGTERM: it drains, like a pod being scaled down);
- ``GET /activator/status`` says which workers run and what each cold start cost;
  ``POST /activator/scale-to-zero`` stops every idle worker at once (benchmarks).

The activator never looks into a request: a task workload and a pre-warm ``GET``
of the readiness path are forwarded alike, so a pre-warm cannot run a task.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_knative.events import log_event
from airflow_knative.local.ports import REVISION_BAND, pick_free_ports
from airflow_knative.local.processes import Component, ProcessGroup, worker_command
from airflow_knative.local.start_queue import TASK_WAITS, UNKNOWN_DISTANCE, StartQueue
from airflow_knative.naming import InvalidServiceNameError, validate_service_name
from airflow_knative.protocol import PREWARM_DISTANCE_HEADER, READINESS_PATH

log = logging.getLogger("airflow_knative.activator")

STATUS_PATH = "/activator/status"
SCALE_TO_ZERO_PATH = "/activator/scale-to-zero"
SERVICES_PREFIX = "/services"
#: Headers a proxy must not copy from one hop to the next (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
)


@dataclass(frozen=True)
class ActivatorSettings:
    """How workers are started and when they are stopped."""

    log_dir: Path
    secret_file: str
    idle_timeout: float = 30.0
    worker_concurrency: int = 4
    start_timeout: float = 180.0
    host: str = "127.0.0.1"
    #: Workers starting at once; 0: no limit (see start_queue for why that is the default).
    max_starting: int = 0


@dataclass
class Revision:
    """One running (or starting) worker process for one service: a pod, in Knative's terms."""

    service: str
    requested_at: float
    woken_by: str = ""
    #: None while the start waits its turn in the :class:`StartQueue`.
    component: Component | None = None
    port: int = 0
    started_at: float | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_at: float | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        """Where the worker listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def exited(self) -> bool:
        """The worker process was started and has ended."""
        return self.component is not None and self.component.process.poll() is not None


class Activator:
    """Owns the worker processes; all state lives on the event loop's thread."""

    def __init__(self, settings: ActivatorSettings) -> None:
        self.settings = settings
        self.processes = ProcessGroup(settings.log_dir)
        self.revisions: dict[str, Revision] = {}
        self.cold_starts: list[dict[str, object]] = []
        self.start_queue = StartQueue(settings.max_starting or None)
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        """Open the client that probes and proxies to workers."""
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0), limits=httpx.Limits())

    async def close(self) -> None:
        """Stop every worker (they drain) and close the client."""
        self.processes.stop()
        if self._client is not None:
            await self._client.aclose()

    # -- lifecycle of one service's worker -------------------------------------------------

    async def activate(self, service: str, woken_by: str, priority: int = TASK_WAITS) -> Revision:
        """Return the service's ready worker, starting one (and waiting for it) if there is none.

        ``priority`` is the pre-warm distance for a pre-warm (see :mod:`start_queue`): its
        start may wait behind starts a task waits for and behind nearer pre-warms.
        """
        revision = self.revisions.get(service)
        if revision is None or revision.exited:
            revision = Revision(service, time.time(), woken_by=woken_by)
            self.revisions[service] = revision
            asyncio.get_running_loop().create_task(self._launch(revision, priority))
        elif revision.component is None:
            self.start_queue.promote(service, priority)
        revision.in_flight += 1  # counted while held too: the reaper must not stop a starting worker
        try:
            async with asyncio.timeout(self.settings.start_timeout):
                await revision.ready.wait()
        except BaseException:
            revision.in_flight -= 1
            raise
        if revision.component is None or revision.exited:
            revision.in_flight -= 1
            log_dir = self.settings.log_dir
            where = revision.component.log_path if revision.component else log_dir / "activator.log"
            raise RuntimeError(f"worker for {service} did not start or exited; see {where}")
        return revision

    def release(self, revision: Revision) -> None:
        """A request through ``revision`` ended: its idle time starts now."""
        revision.in_flight -= 1
        revision.last_used = time.monotonic()

    async def _launch(self, revision: Revision, priority: int) -> None:
        """Wait for a start slot, start the worker, hold the slot until it is ready or gone."""
        try:
            await self.start_queue.acquire(revision.service, priority)
        except BaseException:
            revision.ready.set()  # waiters see no process and answer 503
            raise
        try:
            self._start(revision)
            await self._await_ready(revision)
        except Exception:
            log.exception("cannot start a worker for %s", revision.service)
        finally:
            self.start_queue.release()
            revision.ready.set()  # also on failure: waiters see the dead process and answer 503

    def _start(self, revision: Revision) -> None:
        """Start ``airflow-knative worker`` for the service (on the loop's thread: see PDEATHSIG)."""
        settings = self.settings
        revision.port = self._free_port()
        command = worker_command(
            port=revision.port,
            name=revision.service,
            secret_file=settings.secret_file,
            concurrency=settings.worker_concurrency,
            host=settings.host,
        )
        revision.component = self.processes.start(f"worker-{revision.service}", command, dict(os.environ))
        revision.started_at = time.time()
        log_event(
            log,
            "activator_starting",
            service=revision.service,
            port=revision.port,
            woken_by=revision.woken_by,
            queued_s=revision.started_at - revision.requested_at,
        )

    def _free_port(self) -> int:
        """A port for a new worker: free now, outside the ephemeral range, promised to no other.

        A starting worker binds its port only after importing Airflow; a port from the
        ephemeral range could be taken by one of our own connections meanwhile.
        """
        promised = {r.port for r in self.revisions.values() if r.port}
        return pick_free_ports(REVISION_BAND, avoid=promised, host=self.settings.host)

    async def _await_ready(self, revision: Revision) -> None:
        """Poll the new worker's readiness path, as Knative's queue-proxy probes a new pod."""
        assert self._client is not None and revision.started_at is not None
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline and not revision.exited:
            with contextlib.suppress(httpx.TransportError):
                answer = await self._client.get(revision.url + READINESS_PATH, timeout=2.0)
                if answer.status_code == 200:
                    revision.ready_at = time.time()
                    cold = {
                        "service": revision.service,
                        "woken_by": revision.woken_by,
                        "start_s": revision.ready_at - revision.started_at,
                        "queued_s": revision.started_at - revision.requested_at,
                        "started_at": revision.started_at,
                    }
                    self.cold_starts.append(cold)
                    log_event(log, "activator_ready", **cold)
                    break
            await asyncio.sleep(0.05)

    async def reap(self) -> None:
        """Stop workers idle for ``idle_timeout``: Knative's scale to zero."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.idle_timeout / 4))
            self.scale_down(self.settings.idle_timeout)

    def scale_down(self, idle_for: float) -> list[str]:
        """Stop every ready worker that has had no request for ``idle_for`` seconds; return their names."""
        now = time.monotonic()
        stopped = []
        for service, revision in list(self.revisions.items()):
            running = not revision.exited
            if running and (revision.in_flight or not revision.ready.is_set()):
                continue
            if running and now - revision.last_used < idle_for:
                continue
            del self.revisions[service]
            if revision.component is None:  # cannot happen: a queued start is not ready
                continue
            _terminate(revision.component)
            asyncio.get_running_loop().create_task(self._reap(revision.component))
            stopped.append(service)
            log_event(log, "activator_scaled_to_zero", service=service, running=running)
        return stopped

    async def _reap(self, component: Component) -> None:
        """Wait for a stopped worker to exit, then forget it (no zombie, no stale pid at shutdown)."""
        try:
            await asyncio.to_thread(component.process.wait, self.settings.start_timeout)
        except Exception:  # a worker that ignores SIGTERM is killed at shutdown with the rest
            return
        with contextlib.suppress(ValueError):
            self.processes.components.remove(component)

    # -- HTTP --------------------------------------------------------------------------------

    async def forward(self, request: Request) -> Response:
        """``/services/<service>/<path>``: hold until the service's worker is ready, then proxy."""
        assert self._client is not None
        service = request.path_params["service"]
        try:
            validate_service_name(service, source="activator request path")
        except InvalidServiceNameError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        path = "/" + request.path_params["path"]
        try:
            revision = await self.activate(
                service, woken_by=f"{request.method} {path}", priority=_start_priority(request, path)
            )
        except (TimeoutError, RuntimeError) as exc:
            # 503 before the worker saw anything: the executor may safely retry.
            return JSONResponse({"error": f"{service}: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        upstream_request = self._client.build_request(
            request.method, revision.url + path, headers=headers, content=await request.body()
        )
        try:
            upstream = await self._client.send(upstream_request, stream=True)
        except httpx.TransportError as exc:
            self.release(revision)
            return JSONResponse({"error": f"{service}: {exc}"}, status_code=502)

        async def finish() -> None:
            await upstream.aclose()
            self.release(revision)

        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP},
            background=BackgroundTask(finish),
        )

    async def status(self, request: Request) -> Response:
        """``GET /activator/status``: running workers and every cold start so far."""
        now = time.monotonic()
        return JSONResponse(
            {
                "running": {
                    name: {
                        "port": r.port,
                        "pid": r.component.process.pid if r.component else None,
                        "ready": r.ready.is_set(),
                        "in_flight": r.in_flight,
                        "idle_s": now - r.last_used,
                        "woken_by": r.woken_by,
                    }
                    for name, r in self.revisions.items()
                },
                "cold_starts": self.cold_starts,
                "starting": self.start_queue.starting,
                "waiting_to_start": self.start_queue.waiting,
                "max_starting": self.start_queue.limit,
                "idle_timeout": self.settings.idle_timeout,
            }
        )

    async def scale_to_zero(self, request: Request) -> Response:
        """``POST /activator/scale-to-zero``: stop every idle worker now."""
        return JSONResponse({"stopped": self.scale_down(0.0)})


def _start_priority(request: Request, path: str) -> int:
    """0 (a task waits) unless the request is a pre-warm: then its distance, nearest first.

    A readiness GET without a (valid) distance header is a pre-warm of unknown distance and
    goes after those that say theirs.
    """
    if request.method not in ("GET", "HEAD") or path != READINESS_PATH:
        return TASK_WAITS
    try:
        return max(1, int(request.headers.get(PREWARM_DISTANCE_HEADER, "")))
    except ValueError:
        return UNKNOWN_DISTANCE


def _terminate(component: Component) -> None:
    """SIGTERM the worker's process group; it drains and exits (reaped by a later poll)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(component.process.pid, signal.SIGTERM)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(activator: Activator) -> Starlette:
    """The activator's ASGI app; the reaper runs for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await activator.open()
        reaper = asyncio.get_running_loop().create_task(activator.reap())
        yield
        reaper.cancel()
        await activator.close()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    return Starlette(
        routes=[
            Route(STATUS_PATH, activator.status, methods=["GET"]),
            Route(SCALE_TO_ZERO_PATH, activator.scale_to_zero, methods=["POST"]),
            Route("/healthz", _healthz),
            Route(SERVICES_PREFIX + "/{service}/{path:path}", activator.forward, methods=methods),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m airflow_knative.local.activator``: started by the local stack with ``--scale-to-zero``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--max-starting", type=int, default=0, help="workers starting at once; 0: no limit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request is noise
    activator = Activator(
        ActivatorSettings(
            log_dir=args.log_dir,
            secret_file=args.secret_file,
            idle_timeout=args.idle_timeout,
            worker_concurrency=args.worker_concurrency,
            host=args.host,
            max_starting=args.max_starting,
        )
    )
    uvicorn.run(create_app(activator), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
