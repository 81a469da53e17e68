"""Sends workloads to workers from a background event loop, so the scheduler never waits on HTTP.

The scheduler thread only hands workloads over (:meth:`Dispatcher.submit`) and
later collects :class:`DispatchOutcome`s; routing, inline values, retries and the
response stream all live on the dispatcher's own thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx
from pydantic import ValidationError

from airflow_knative.events import log_event
from airflow_knative.executor.result_cache import ResultCache
from airflow_knative.executor.retry_policy import (
    AcceptTimeoutError,
    NotAcceptedError,
    RejectedError,
    StreamBrokenError,
    dispatch_retrying,
    parse_retry_after,
)
from airflow_knative.executor.upstream import UpstreamIndex, UpstreamMap, load_upstream_map
from airflow_knative.protocol import (
    RETRYABLE_STATUS,
    SECRET_HEADER,
    STREAM_EVENT_ADAPTER,
    WORKLOAD_PATH,
    AcceptedEvent,
    FinishedEvent,
    encode_dispatch_request,
)
from airflow_knative.routing import Router, RoutingError, RoutingFileError
from airflow_knative.settings import ExecutorSettings
from airflow_knative.task_config import InvalidTaskConfigError

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask
    from airflow.executors.workloads.types import WorkloadKey
    from airflow.models.taskinstancekey import TaskInstanceKey

log = logging.getLogger("airflow_knative.executor")

#: Task states a worker may report that mean the attempt did not succeed.
_UNSUCCESSFUL_STATES = frozenset({"failed", "up_for_retry", "upstream_failed", "removed"})


@dataclass(frozen=True)
class DispatchOutcome:
    """What the scheduler should be told about one workload.

    ``lost`` means the worker accepted the task and the connection broke: the
    executor stops tracking it and Airflow's heartbeat checks decide its state.
    """

    key: WorkloadKey  # a TaskInstanceKey; a CallbackKey or ConnectionTestKey for side workloads
    state: Literal["success", "failed", "lost"]
    info: str | None = None


def outcome_state(finished: FinishedEvent) -> Literal["success", "failed"]:
    """Map a worker's final answer to the executor event the scheduler expects."""
    if finished.exit_code != 0 or finished.state in _UNSUCCESSFUL_STATES:
        return "failed"
    return "success"


class Dispatcher:
    """Owns the HTTP client and event loop that talk to workers."""

    def __init__(
        self,
        settings: ExecutorSettings,
        secret: str,
        router: Router,
        max_connections: int | None,
        on_outcome: Callable[[DispatchOutcome], None],
        upstream_loader: Callable[[str], UpstreamMap] = load_upstream_map,
    ) -> None:
        self.settings = settings
        self.router = router
        self.on_outcome = on_outcome
        self.results = ResultCache(settings.inline_cache_max_bytes)
        self._secret = secret
        self._max_connections = max_connections
        self._upstream = UpstreamIndex()
        self._upstream_loader = upstream_loader
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="knative-dispatcher", daemon=True)
        self._client: httpx.AsyncClient | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    # -- called from the scheduler thread -------------------------------------------------

    def start(self) -> None:
        """Start the event loop thread and its HTTP client."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open_client(), self._loop).result()

    def submit(self, workload: ExecuteTask) -> None:
        """Hand one workload to the loop and return at once."""
        payload = workload.model_dump_json()
        self._loop.call_soon_threadsafe(self._spawn, workload, payload)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop dispatching; return how many tasks were still in flight (retrying or streaming)."""
        if not self._thread.is_alive():
            return 0
        pending = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        return pending

    # -- on the loop ----------------------------------------------------------------------

    async def _open_client(self) -> None:
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        self._client = httpx.AsyncClient(
            limits=limits, timeout=httpx.Timeout(None, connect=self.settings.connect_timeout)
        )

    async def _shutdown(self) -> int:
        pending = len(self._in_flight)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=5.0)
        if self._client is not None:
            await self._client.aclose()
        return pending

    def _spawn(self, workload: ExecuteTask, payload: str) -> None:
        task = self._loop.create_task(self._dispatch(workload, payload))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _dispatch(self, workload: ExecuteTask, payload: str) -> None:
        ti = workload.ti
        key = ti.key
        try:
            url = self.router.url_for(ti.dag_id, ti.task_id, ti.executor_config)
        except (RoutingError, RoutingFileError, InvalidTaskConfigError) as exc:
            log.error("cannot route task %s: %s", key, exc)
            self.on_outcome(DispatchOutcome(key, "failed", str(exc)))
            return
        inline = self.results.inline_for(
            ti.dag_id, ti.run_id, (await self._upstream_of(workload)), self.settings.inline_max_bytes
        )
        body = encode_dispatch_request(payload, inline)
        dispatched_at = time.time()
        try:
            finished = await self._send(url, body, key)
        except asyncio.CancelledError:
            log.warning("executor stopped while %s ran; Airflow's task heartbeats decide its state", key)
            raise
        except StreamBrokenError as exc:
            log.warning(
                "connection to %s broke after 'accepted' of %s (%s); not resending: the outcome is left "
                "to Airflow's task heartbeats",
                url,
                key,
                exc,
            )
            self.on_outcome(DispatchOutcome(key, "lost", str(exc)))
            return
        except (NotAcceptedError, RejectedError, AcceptTimeoutError) as exc:
            message = f"task {key} was not run by {url}: {exc}"
            log.error(message)
            self.on_outcome(DispatchOutcome(key, "failed", message))
            return
        except Exception as exc:  # never leave a task in the running set without an outcome
            log.exception("dispatching %s to %s failed unexpectedly", key, url)
            self.on_outcome(DispatchOutcome(key, "failed", f"{type(exc).__name__}: {exc}"))
            return
        if finished.has_return_value:
            map_index = ti.map_index if ti.map_index is not None else -1
            self.results.put((ti.dag_id, ti.run_id, ti.task_id, map_index), finished.return_value)
        self._log_timings(workload, url, dispatched_at, len(inline), finished)
        self.on_outcome(DispatchOutcome(key, outcome_state(finished), finished.error))

    async def _upstream_of(self, workload: ExecuteTask) -> frozenset[str]:
        version = str(workload.ti.dag_version_id)
        upstream = self._upstream.known(version)
        if upstream is None:
            upstream = await asyncio.to_thread(self._upstream_loader, version)
            self._upstream.remember(version, upstream)
        return upstream.get(workload.ti.task_id, frozenset())

    async def _send(self, url: str, body: bytes, key: TaskInstanceKey) -> FinishedEvent:
        settings = self.settings

        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            error = outcome.exception() if outcome is not None else None
            log.info("worker %s did not take %s (before 'accepted': %s); sending again", url, key, error)

        retrying = dispatch_retrying(
            deadline=settings.dispatch_deadline,
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
            before_sleep=before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(url, body)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(self, url: str, body: bytes) -> FinishedEvent:
        """Send once; raise NotAcceptedError only while nothing can have started the task.

        ``accept_timeout`` bounds everything up to the ``accepted`` event, response
        headers included (a cold start behind Knative's activator delays both).
        """
        assert self._client is not None
        headers = {SECRET_HEADER: self._secret, "Content-Type": "application/json"}
        request = self._client.build_request(
            "POST", url.rstrip("/") + WORKLOAD_PATH, content=body, headers=headers
        )
        accept_by = asyncio.get_running_loop().time() + self.settings.accept_timeout
        try:
            async with asyncio.timeout_at(accept_by):
                response = await self._client.send(request, stream=True)
        except TimeoutError as exc:
            raise AcceptTimeoutError(f"no answer within {self.settings.accept_timeout}s") from exc
        except httpx.TransportError as exc:
            # Before response headers the worker has not begun the task (it submits only
            # while streaming), so a transport error here is safe to retry.
            raise NotAcceptedError(f"{type(exc).__name__}: {exc}") from exc
        try:
            if response.status_code in RETRYABLE_STATUS:
                raise NotAcceptedError(
                    f"HTTP {response.status_code}", parse_retry_after(response.headers.get("Retry-After"))
                )
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:500]
                raise RejectedError(f"HTTP {response.status_code}: {detail}")
            lines = response.aiter_lines()
            await self._await_accepted(lines, accept_by)
            return await self._await_finished(lines)
        finally:
            await response.aclose()

    async def _await_accepted(self, lines: AsyncIterator[str], accept_by: float) -> None:
        """Read the first event, which must be ``accepted``; from then on nothing is resent."""
        try:
            async with asyncio.timeout_at(accept_by):
                first = await anext(lines)
        except TimeoutError as exc:
            raise AcceptTimeoutError(f"no 'accepted' within {self.settings.accept_timeout}s") from exc
        except (httpx.TransportError, StopAsyncIteration) as exc:
            # Workers start a workload only after sending 'accepted', and Airflow's Execution
            # API refuses to start one try twice: sending again cannot run the task twice.
            raise NotAcceptedError(f"connection broke before 'accepted', nothing ran: {exc!r}") from exc
        try:
            event = STREAM_EVENT_ADAPTER.validate_json(first)
        except ValidationError as exc:
            raise RejectedError(f"worker answered {first[:200]!r} instead of 'accepted'") from exc
        if not isinstance(event, AcceptedEvent):
            raise RejectedError(f"worker answered {first[:200]!r} instead of 'accepted'")

    async def _await_finished(self, lines: AsyncIterator[str]) -> FinishedEvent:
        """Read heartbeats until ``finished``; any failure here means the stream broke."""
        idle = self.settings.stream_idle_timeout
        try:
            while True:
                async with asyncio.timeout(idle):
                    line = await anext(lines)
                event = STREAM_EVENT_ADAPTER.validate_json(line)
                if isinstance(event, FinishedEvent):
                    return event
        except TimeoutError as exc:
            raise StreamBrokenError(f"no event for {idle}s") from exc
        except ValidationError as exc:
            raise StreamBrokenError(f"unreadable event from the worker: {exc}") from exc
        except (httpx.TransportError, StopAsyncIteration) as exc:
            raise StreamBrokenError(repr(exc)) from exc

    def _log_timings(
        self,
        workload: ExecuteTask,
        url: str,
        dispatched_at: float,
        inline_count: int,
        finished: FinishedEvent,
    ) -> None:
        """One structured line per task: the benchmarks read where the time went from these."""
        ti = workload.ti
        log_event(
            log,
            "knative_task_done",
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=ti.map_index,
            try_number=ti.try_number,
            service_url=url,
            dispatched_at=dispatched_at,
            answered_at=time.time(),
            inline_values=inline_count,
            state=finished.state,
            exit_code=finished.exit_code,
            worker_timings=finished.timings.model_dump(),
        )

    # -- callbacks and connection tests (see executor/side_workloads.py) -------------------

    def submit_side(self, key: WorkloadKey, payload: str, url_of: Callable[[], str]) -> None:
        """Hand a callback or connection-test workload to the loop; ``url_of`` names its worker."""
        self._loop.call_soon_threadsafe(self._spawn_side, key, payload, url_of)

    def _spawn_side(self, key: WorkloadKey, payload: str, url_of: Callable[[], str]) -> None:
        task = self._loop.create_task(self._dispatch_side(key, payload, url_of))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _dispatch_side(self, key: WorkloadKey, payload: str, url_of: Callable[[], str]) -> None:
        """Send without inline values; every error becomes a failed outcome (the scheduler must go on)."""
        url = "(unrouted)"
        try:
            url = await asyncio.to_thread(url_of)
            finished = await self._send(url, encode_dispatch_request(payload, []), key)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"{key} did not run on {url}: {type(exc).__name__}: {exc}"
            log.error(message)
            self.on_outcome(DispatchOutcome(key, "failed", message))
            return
        self.on_outcome(DispatchOutcome(key, outcome_state(finished), finished.error))
