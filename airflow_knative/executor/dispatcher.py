"""Sends workloads to workers from a background event loop, so the scheduler never waits on HTTP.

The scheduler thread only hands workloads over (:meth:`Dispatcher.submit`) and
later collects :class:`DispatchOutcome`s; routing, inline values, retries and the
response stream all live on the dispatcher's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp
from pydantic import ValidationError

from airflow_knative.events import log_event
from airflow_knative.executor.inline_values import (
    OpenStreams,
    UpstreamTries,
    load_upstream_tries,
    wait_for_all,
)
from airflow_knative.executor.metrics import ExecutorMetrics
from airflow_knative.executor.result_cache import ResultCache, ValueKey
from airflow_knative.executor.retry_policy import (
    AcceptTimeoutError,
    NotAcceptedError,
    RejectedError,
    StreamBrokenError,
    dispatch_retrying,
    parse_retry_after,
    seconds_left,
)
from airflow_knative.executor.task_log import write_task_log_reason
from airflow_knative.executor.upstream import UpstreamIndex, UpstreamMap, load_upstream_map
from airflow_knative.protocol import (
    RETRYABLE_STATUS,
    SECRET_HEADER,
    STREAM_EVENT_ADAPTER,
    WORKLOAD_PATH,
    AcceptedEvent,
    FinishedEvent,
    InlineXCom,
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


#: How long to wait for a response's end after its ``finished`` event (which workers send last).
_READ_TO_END_TIMEOUT = 1.0


@dataclass(frozen=True)
class DispatchOutcome:
    """What the scheduler should be told about one workload.

    ``lost`` means the worker accepted the task and the connection broke: the
    task may still run, so the executor keeps its slot and watches the task
    instance (``ti_id``) in the database until Airflow records its end (the task
    itself, or Airflow's task heartbeat timeout).
    """

    key: WorkloadKey  # a TaskInstanceKey; a CallbackKey or ConnectionTestKey for side workloads
    state: Literal["success", "failed", "lost"]
    info: str | None = None
    ti_id: str | None = None


#: The ``tasks_not_run`` metric's reason for each way a worker did not run a task.
_NOT_RUN_REASONS: dict[type[Exception], str] = {
    NotAcceptedError: "not_accepted",
    RejectedError: "rejected",
    AcceptTimeoutError: "accept_timeout",
}


def _value_key(workload: ExecuteTask) -> ValueKey:
    ti = workload.ti
    return (ti.dag_id, ti.run_id, ti.task_id, ti.map_index if ti.map_index is not None else -1)


async def response_lines(response: aiohttp.ClientResponse) -> AsyncGenerator[str, None]:
    """The response body as text lines, however long (a ``finished`` line carries the return value).

    aiohttp's own ``readline`` refuses lines over 128 KiB, so lines are split
    here from the chunks as they arrive; a last line without its newline is
    yielded at the end, as httpx's ``aiter_lines`` did.
    """
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, rest = pending.split(b"\n")
        pending = bytearray(rest)
        for line in complete:
            yield line.decode()
    if pending:
        yield pending.decode()


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
        tries_loader: Callable[[str, str, frozenset[str]], UpstreamTries] = load_upstream_tries,
        task_log_folder: Path | None = None,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ExecutorMetrics()
        self.router = router
        self.on_outcome = on_outcome
        self.results = ResultCache(settings.inline_cache_max_bytes)
        self._secret = secret
        self._max_connections = max_connections
        self._upstream = UpstreamIndex()
        self._upstream_loader = upstream_loader
        self._tries_loader = tries_loader
        self._task_log_folder = task_log_folder
        self._open = OpenStreams()
        self._by_key: dict[TaskInstanceKey, asyncio.Task[None]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="knative-dispatcher", daemon=True)
        self._client: aiohttp.ClientSession | None = None
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

    def revoke(self, key: TaskInstanceKey) -> None:
        """Stop dispatching ``key`` (retrying or streaming) without reporting an outcome.

        For Airflow's stuck-in-queued handling (``revoke_task``). Once a worker
        accepted the task, closing the stream does not stop it there: the task's
        own Execution API calls are refused once Airflow moved the task instance on.
        """
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._cancel, key)

    def _cancel(self, key: TaskInstanceKey) -> None:
        task = self._by_key.pop(key, None)
        if task is not None:
            task.cancel()

    @property
    def in_flight(self) -> int:
        """Tasks being dispatched or streamed right now (read from the scheduler thread)."""
        return len(self._by_key)

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
        """One aiohttp session for every dispatch: its pool keeps a connection per worker warm.

        aiohttp, not httpx, because httpx's pool checks every idle connection on
        each request (milliseconds of CPU per task at a few dozen connections),
        which capped dispatch near 250 tasks/s on one core. No cookies, no
        environment proxies: workers are addressed directly.
        """
        connector = aiohttp.TCPConnector(limit=self._max_connections or 0, limit_per_host=0)
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    async def _shutdown(self) -> int:
        pending = len(self._in_flight)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=5.0)
        if self._client is not None:
            await self._client.close()
        await asyncio.get_running_loop().shutdown_asyncgens()
        return pending

    def _spawn(self, workload: ExecuteTask, payload: str) -> None:
        task = self._loop.create_task(self._dispatch(workload, payload))
        self._in_flight.add(task)
        self._by_key[workload.ti.key] = task
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(lambda _: self._forget_task(workload.ti.key, task))

    def _forget_task(self, key: TaskInstanceKey, task: asyncio.Task[None]) -> None:
        if self._by_key.get(key) is task:
            del self._by_key[key]

    async def _dispatch(self, workload: ExecuteTask, payload: str) -> None:
        """Run one workload to its outcome; whatever goes wrong, exactly one outcome is reported."""
        ti = workload.ti
        value_key = _value_key(workload)
        # A new try of this task instance: whatever it returned before is no longer its value.
        self.results.forget(value_key)
        ended = self._open.begin(value_key, ti.try_number)
        outcome: DispatchOutcome | None = None
        try:
            outcome = await self._run(workload, payload)
            self.metrics.outcome(outcome.state)
        except asyncio.CancelledError:
            log.warning("executor stopped while %s ran; Airflow's task heartbeats decide its state", ti.key)
            raise
        except Exception as exc:  # never leave a task in the running set without an outcome
            log.exception("dispatching %s failed unexpectedly", ti.key)
            outcome = DispatchOutcome(ti.key, "failed", f"{type(exc).__name__}: {exc}", ti_id=str(ti.id))
            self.metrics.not_run("error")
            await self._note_in_task_log(
                workload, f"airflow-knative could not dispatch this task: {outcome.info}"
            )
        finally:
            self._open.end(value_key, ended)
            if outcome is not None:
                self.on_outcome(outcome)

    async def _run(self, workload: ExecuteTask, payload: str) -> DispatchOutcome:
        ti = workload.ti
        key = ti.key
        taken_up = time.monotonic()
        try:
            url = await self._route(workload)
        except (RoutingError, RoutingFileError, InvalidTaskConfigError) as exc:
            log.error("cannot route task %s: %s", key, exc)
            self.metrics.not_run("routing")
            await self._note_in_task_log(workload, f"airflow-knative did not run this task: {exc}")
            return DispatchOutcome(key, "failed", str(exc), ti_id=str(ti.id))
        inline = await self._inline_values(workload)
        body = encode_dispatch_request(payload, inline)
        dispatched_at = time.time()
        try:
            finished = await self._send(
                url,
                body,
                key,
                workload.token,
                lambda: self.metrics.dispatch_latency(time.monotonic() - taken_up),
            )
        except StreamBrokenError as exc:
            self.metrics.stream_lost()
            log.warning(
                "connection to %s broke after 'accepted' of %s (%s); not resending: the executor keeps the "
                "slot and watches the task's state in the database, Airflow's task heartbeats decide it",
                url,
                key,
                exc,
            )
            return DispatchOutcome(key, "lost", str(exc), ti_id=str(ti.id))
        except (NotAcceptedError, RejectedError, AcceptTimeoutError) as exc:
            self.metrics.not_run(_NOT_RUN_REASONS[type(exc)])
            message = f"task {key} was not run by {url}: {exc}"
            log.error(message)
            await self._note_in_task_log(
                workload, f"airflow-knative: no worker ran this task ({type(exc).__name__}): {message}"
            )
            return DispatchOutcome(key, "failed", message, ti_id=str(ti.id))
        if finished.has_return_value:
            self.results.put(_value_key(workload), finished.return_value, ti.try_number)
        self._log_timings(workload, url, dispatched_at, len(inline), finished)
        return DispatchOutcome(key, outcome_state(finished), finished.error, ti_id=str(ti.id))

    async def _route(self, workload: ExecuteTask) -> str:
        """Resolve the task's URL; a changed routing file is parsed in a thread, never on this loop."""
        if self.router.changed():
            await asyncio.to_thread(self.router.refresh)
        ti = workload.ti
        return self.router.url_for(ti.dag_id, ti.task_id, ti.executor_config, reload=False)

    async def _inline_values(self, workload: ExecuteTask) -> list[InlineXCom]:
        """The upstream values to send with the task; counts hits and misses per upstream task."""
        upstream = await self._upstream_of(workload)
        inline = await self._current_inline_values(workload, upstream) if upstream else []
        sent = {value.task_id for value in inline}
        self.metrics.inline(hits=len(inline), misses=len(upstream - sent))
        return inline

    async def _current_inline_values(
        self, workload: ExecuteTask, upstream: frozenset[str]
    ) -> list[InlineXCom]:
        """The upstream values to send with the task: only the current try's, never a stale one."""
        ti = workload.ti
        if not (
            self.results.has_values(ti.dag_id, ti.run_id) or self._open.any_of(ti.dag_id, ti.run_id, upstream)
        ):
            return []
        try:
            tries = await asyncio.to_thread(self._tries_loader, ti.dag_id, ti.run_id, upstream)
        except Exception:  # inline values are an optimisation: without them tasks read via the API
            log.warning(
                "cannot read the upstream tries of %s; sending no inline values", ti.key, exc_info=True
            )
            return []
        finishing = self._open.finishing(ti.dag_id, ti.run_id, upstream, tries)
        if finishing and not await wait_for_all(finishing, self.settings.inline_wait_timeout):
            log.info(
                "upstream of %s still streaming after %ss; its value goes via the API",
                ti.key,
                self.settings.inline_wait_timeout,
            )
        return self.results.inline_for(
            ti.dag_id,
            ti.run_id,
            upstream,
            self.settings.inline_max_bytes,
            {k: v.try_number for k, v in tries.items()},
        )

    async def _note_in_task_log(self, workload: ExecuteTask, message: str) -> None:
        """Put the reason a task did not run into its Airflow task log (see :mod:`task_log`)."""
        if self._task_log_folder is None or not workload.log_path:
            return
        await asyncio.to_thread(write_task_log_reason, self._task_log_folder, workload.log_path, message)

    async def _upstream_of(self, workload: ExecuteTask) -> frozenset[str]:
        version = str(workload.ti.dag_version_id)
        upstream = self._upstream.known(version)
        if upstream is None:
            upstream = await asyncio.to_thread(self._upstream_loader, version)
            self._upstream.remember(version, upstream)
        return upstream.get(workload.ti.task_id, frozenset())

    async def _send(
        self,
        url: str,
        body: bytes,
        key: TaskInstanceKey,
        token: str,
        on_accepted: Callable[[], None] | None = None,
    ) -> FinishedEvent:
        """Send until a worker accepts, within ``dispatch_deadline`` and the workload token's life.

        Airflow issues the workload's token for ``[scheduler] task_queued_timeout``;
        a worker that starts the task after it expired could not even report it
        running. So neither the retries nor the wait for ``accepted`` go past its
        expiry minus ``token_margin``.
        """
        settings = self.settings
        token_left = seconds_left(token, settings.token_margin)
        if token_left is not None and token_left <= 0:
            raise RejectedError(
                f"the workload's token expires in less than token_margin={settings.token_margin}s; "
                "not asking a worker to start the task (raise [scheduler] task_queued_timeout?)"
            )
        loop = asyncio.get_running_loop()
        token_limit = None if token_left is None else loop.time() + token_left

        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            error = outcome.exception() if outcome is not None else None
            log.info("worker %s did not take %s (before 'accepted': %s); sending again", url, key, error)
            self.metrics.retry(getattr(error, "cause", "unknown"))

        retrying = dispatch_retrying(
            deadline=settings.dispatch_deadline
            if token_left is None
            else min(settings.dispatch_deadline, token_left),
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
            before_sleep=before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(url, body, token_limit, on_accepted)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self,
        url: str,
        body: bytes,
        token_limit: float | None = None,
        on_accepted: Callable[[], None] | None = None,
    ) -> FinishedEvent:
        """Send once; raise NotAcceptedError only while nothing can have started the task.

        ``accept_timeout`` bounds everything up to the ``accepted`` event, response
        headers included (a cold start behind Knative's activator delays both); so
        does ``token_limit`` (loop time), the workload token's usable end.
        """
        assert self._client is not None
        headers = {SECRET_HEADER: self._secret, "Content-Type": "application/json"}
        endpoint = url.rstrip("/") + WORKLOAD_PATH
        accept_by = asyncio.get_running_loop().time() + self.settings.accept_timeout
        if token_limit is not None:
            accept_by = min(accept_by, token_limit)
        try:
            async with asyncio.timeout_at(accept_by):
                response = await self._client.post(endpoint, data=body, headers=headers)
        except aiohttp.ClientError as exc:
            # Before response headers the worker has not begun the task (it submits only
            # while streaming), so a transport error here is safe to retry.
            raise NotAcceptedError(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise AcceptTimeoutError(
                f"no answer within {self.settings.accept_timeout}s (or before the workload token expired)"
            ) from exc
        try:
            if response.status in RETRYABLE_STATUS:
                raise NotAcceptedError(
                    f"HTTP {response.status}",
                    parse_retry_after(response.headers.get("Retry-After")),
                    cause=f"http_{response.status}",
                )
            if response.status != 200:
                detail = (await response.read()).decode(errors="replace")[:500]
                raise RejectedError(f"HTTP {response.status}: {detail}")
            # Closed here, on this loop: left to the garbage collector, the half-read line
            # generator would be finalized later, after the loop stopped, as a pending task.
            async with contextlib.aclosing(response_lines(response)) as lines:
                await self._await_accepted(lines, accept_by)
                if on_accepted is not None:
                    on_accepted()
                finished = await self._await_finished(lines)
                await self._read_to_end(lines)
                return finished
        finally:
            response.release()

    async def _await_accepted(self, lines: AsyncIterator[str], accept_by: float) -> None:
        """Read the first event, which must be ``accepted``; from then on nothing is resent."""
        try:
            async with asyncio.timeout_at(accept_by):
                first = await anext(lines)
        except TimeoutError as exc:
            raise AcceptTimeoutError(f"no 'accepted' within {self.settings.accept_timeout}s") from exc
        except (aiohttp.ClientError, StopAsyncIteration) as exc:
            # Workers start a workload only after sending 'accepted', and Airflow's Execution
            # API refuses to start one try twice: sending again cannot run the task twice.
            raise NotAcceptedError(
                f"connection broke before 'accepted', nothing ran: {exc!r}", cause="closed_before_accepted"
            ) from exc
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
        except (aiohttp.ClientError, StopAsyncIteration) as exc:
            raise StreamBrokenError(repr(exc)) from exc

    async def _read_to_end(self, lines: AsyncIterator[str]) -> None:
        """Read the response's end after ``finished``, so its connection goes back to the pool.

        A response closed before its last chunk was read is closed with its
        connection: without this, every task paid a new TCP connection to its
        worker (on a cluster, to the queue-proxy or activator). The task's outcome
        is already known, so nothing here can change it; a worker that keeps the
        stream open only costs that connection.
        """
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout(_READ_TO_END_TIMEOUT):
                async for line in lines:
                    log.debug("worker sent %r after 'finished'; ignored", line[:200])

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

    def submit_side(self, key: WorkloadKey, payload: str, token: str, url_of: Callable[[], str]) -> None:
        """Hand a callback or connection-test workload to the loop; ``url_of`` names its worker."""
        self._loop.call_soon_threadsafe(self._spawn_side, key, payload, token, url_of)

    def _spawn_side(self, key: WorkloadKey, payload: str, token: str, url_of: Callable[[], str]) -> None:
        task = self._loop.create_task(self._dispatch_side(key, payload, token, url_of))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _dispatch_side(
        self, key: WorkloadKey, payload: str, token: str, url_of: Callable[[], str]
    ) -> None:
        """Send without inline values; every error becomes a failed outcome (the scheduler must go on)."""
        url = "(unrouted)"
        try:
            url = await asyncio.to_thread(url_of)
            body = encode_dispatch_request(payload, [])
            finished = await self._send(url, body, key, token)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"{key} did not run on {url}: {type(exc).__name__}: {exc}"
            log.error(message)
            self.on_outcome(DispatchOutcome(key, "failed", message))
            return
        self.on_outcome(DispatchOutcome(key, outcome_state(finished), finished.error))
