"""A pool of pre-forked supervisor processes, each already holding an imported Airflow.

Airflow's task supervisor installs signal handlers, which Python allows only in a
process's main thread, and it forks the task process itself. So each workload runs
in the main thread of a pool process that was forked from the warm server after
``import airflow``: a task costs a fork, not a new interpreter, and a crashing task
takes down its own process only.

The pool is ours rather than ``concurrent.futures.ProcessPoolExecutor`` because of
what a cluster does to processes: one pool process killed by the out-of-memory
killer breaks a ``ProcessPoolExecutor`` for good (every later submit fails). Here
each pool process is watched through its sentinel on the server's event loop; a
dead one is replaced at once, the workload it held fails at once with an error
that says so (Airflow's retries run it again), and the task process it had forked
is killed with it (``PR_SET_PDEATHSIG``), so it can never run on unseen. Only if a
replacement cannot be started does the pool count as broken, which the worker's
liveness probe reports so Kubernetes restarts the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from airflow_knative.events import log_event
from airflow_knative.protocol import DispatchRequest, FinishedEvent, TaskTimings

log = logging.getLogger("airflow_knative.worker")

_PR_SET_PDEATHSIG = 1

#: What a pool process runs per workload: (request JSON, API URL, received_at) -> FinishedEvent dict.
Target = Callable[[bytes, str, float], dict[str, Any]]


class PoolProcessDiedError(RuntimeError):
    """The pool process running a workload exited before answering; the message names pid and signal."""


class PoolBrokenError(RuntimeError):
    """No pool process can run the workload: a dead one could not be replaced."""


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have Linux send ``sig`` to this process when the thread that forked it ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def _in_forked_child_of_pool_process() -> None:
    """Runs in every process a pool process forks (the task or callback process).

    The task process must not outlive its supervisor: if the pool process is killed,
    an orphaned task would keep running unseen while Airflow retries it elsewhere.
    Signals go back to their defaults the pool process had changed (Airflow installs
    its own handlers in the task process).
    """
    _die_with_parent(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pool_process_main(conn: Connection, server_pid: int, target: Target) -> None:
    """The loop of one pool process: receive a workload, run it, send its result, repeat.

    ``None`` (or the server closing its end) ends the loop.
    """
    _die_with_parent(signal.SIGKILL)
    if os.getppid() != server_pid:  # the server died before prctl took effect
        os._exit(1)
    # The server drains on SIGTERM and then stops the pool; a signal sent to the whole
    # process group must not end a running task's supervisor first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.register_at_fork(after_in_child=_in_forked_child_of_pool_process)
    from airflow_knative.worker import dag_cache
    from airflow_knative.worker.api_transport import execution_api_transport
    from airflow_knative.worker.exit_detection import install_fast_exit_detection
    from airflow_knative.worker.start_heartbeat import install_start_counts_as_heartbeat

    install_fast_exit_detection()
    install_start_counts_as_heartbeat()
    dag_cache.install()  # task processes forked from here reuse this process's parsed DAG files
    try:
        execution_api_transport()  # its TLS context is built now, not while a task waits
    except Exception:  # bad [api] TLS settings: each task reports it, the process must not crash-loop
        log.warning("cannot build the Execution API transport yet; tasks will report why", exc_info=True)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result = target(*job)
        except BaseException as exc:  # the server must get an answer for every workload
            result = {
                "exit_code": 1,
                "error": f"worker could not run the workload: {type(exc).__name__}: {exc}",
                "timings": {"received_at": job[2]},
            }
        conn.send(result)


def run_workload(request_json: bytes, server: str, received_at: float) -> dict[str, Any]:
    """Run one workload in this pool process; return a FinishedEvent dict.

    Task workloads go through Airflow's task supervisor with the XCom relay;
    callbacks and connection tests through Airflow's own supervisors for them.
    """
    from airflow_knative.worker.workloads import is_task_workload

    request = DispatchRequest.model_validate_json(request_json)
    if is_task_workload(request.workload):
        return run_task(request, server, received_at)
    from airflow_knative.worker.side_workloads import run_side_workload

    return run_side_workload(request.workload, server, received_at)


def run_task(request: DispatchRequest, server: str, received_at: float) -> dict[str, Any]:
    """Run one ``ExecuteTask`` workload through Airflow's supervisor; return a FinishedEvent dict.

    Everything the executor needs back (state, exit code, return value, timings) is
    collected by the XCom relay on the way.
    """
    from airflow.sdk.execution_time.supervisor import supervise_task

    from airflow_knative.worker import dag_cache
    from airflow_knative.worker.api_transport import execution_api_transport
    from airflow_knative.worker.workloads import parse_execute_task
    from airflow_knative.worker.write_behind import WriteBehindClient
    from airflow_knative.worker.xcom_relay import XComRelayTransport

    workload = parse_execute_task(request.workload)
    ti = workload.ti
    # Parse the DAG file here, once per file version, instead of in every forked task process.
    dag_cache.preload(workload.bundle_info.name, workload.bundle_info.version, workload.dag_rel_path)
    relay = XComRelayTransport(
        inner=execution_api_transport(),
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index if ti.map_index is not None else -1,
        inline={(x.task_id, x.map_index): x.value for x in request.inline_xcoms},
    )
    error = None
    with WriteBehindClient(base_url=server, token=workload.token, transport=relay) as client:
        try:
            exit_code = supervise_task(
                ti=ti,  # type: ignore[arg-type]  # TaskInstanceDTO duck-types as TaskInstance
                bundle_info=workload.bundle_info,
                dag_rel_path=workload.dag_rel_path,
                token=workload.token,
                client=client,
                log_path=workload.log_path,
                subprocess_logs_to_stdout=True,
                sentry_integration=workload.sentry_integration,
            )
        except Exception as exc:  # the supervisor could not even start the task
            exit_code, error = 1, f"{type(exc).__name__}: {exc}"
    record = relay.record
    return FinishedEvent(
        exit_code=exit_code,
        state=record.state,
        has_return_value=record.has_return_value,
        return_value=record.return_value,
        xcom_reads_inline=record.reads_inline,
        xcom_reads_api=record.reads_api,
        timings=TaskTimings(received_at=received_at, started_at=record.started_at, finished_at=time.time()),
        error=error,
    ).model_dump(mode="json")


def describe_exit(exitcode: int | None) -> str:
    """``killed by SIGKILL`` / ``exited with code 3``: how a pool process ended, in words."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the out-of-memory killer sends this)" if exitcode == -signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


@dataclass(eq=False)
class _Member:
    """One pool process and the server's end of its pipe."""

    process: BaseProcess
    conn: Connection
    exited: asyncio.Future[int | None]
    busy: bool = False


@dataclass
class PoolStatus:
    """What the liveness probe reports."""

    size: int
    alive: int
    busy: int
    deaths: int
    replacements: int
    broken: str | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """The worker can run tasks: nothing made the pool unrepairable."""
        return self.broken is None


class TaskPool:
    """The supervisor processes of one worker, owned by the server's event loop.

    Every method must be called on the event loop's thread, which must be the
    process's main thread: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked
    a pool process ends, so pool processes are forked from the one thread that lives
    as long as the server.
    """

    def __init__(self, size: int, target: Target = run_workload, name: str = "worker") -> None:
        self.size = size
        self.name = name
        self._target = target
        self._context = multiprocessing.get_context("fork")
        self._members: set[_Member] = set()
        self._idle: deque[_Member] = deque()
        self._idle_changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._deaths = 0
        self._replacements = 0
        self._broken: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> list[int]:
        """Fork every pool process now, before the first task pays for it; return their pids."""
        self._loop = asyncio.get_running_loop()
        self._idle_changed = asyncio.Event()
        for _ in range(self.size):
            self._spawn()
        if self._broken:
            raise PoolBrokenError(self._broken)
        return sorted(m.process.pid or 0 for m in self._members)

    async def shutdown(self, timeout: float) -> None:
        """Wait up to ``timeout`` for running workloads, then stop every pool process."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while any(m.busy for m in self._members) and time.monotonic() < deadline:
            await self._wait_idle_change(min(1.0, max(0.01, deadline - time.monotonic())))
        for member in list(self._members):
            with contextlib.suppress(OSError):
                member.conn.send(None)
        stopped = [m.exited for m in self._members]
        if stopped:
            await asyncio.wait(stopped, timeout=5.0)
        for member in list(self._members):
            if member.process.exitcode is None:
                member.process.kill()
            member.conn.close()

    def status(self) -> PoolStatus:
        """Size, live and busy processes, deaths seen, and why the pool is broken if it is."""
        alive = [m for m in self._members if not m.exited.done()]
        return PoolStatus(
            size=self.size,
            alive=len(alive),
            busy=sum(m.busy for m in alive),
            deaths=self._deaths,
            replacements=self._replacements,
            broken=self._broken,
            pids=sorted(m.process.pid or 0 for m in alive),
        )

    # -- running workloads ------------------------------------------------------------------

    async def run(self, request_json: bytes, server: str, received_at: float) -> dict[str, Any]:
        """Run one workload in an idle pool process; return its FinishedEvent dict.

        Raises :class:`PoolProcessDiedError` if the process dies under the workload
        (it is replaced before this returns) and :class:`PoolBrokenError` if no
        process is left to run it.
        """
        member = await self._acquire()
        try:
            member.conn.send((request_json, server, received_at))
            return await self._result_of(member)
        finally:
            member.busy = False
            if member.exited.done():
                member.conn.close()
            elif not self._closing:
                self._idle.append(member)
            self._notify()

    async def _acquire(self) -> _Member:
        while True:
            while self._idle:
                # The most recently used process first: it holds the parsed DAG files
                # (dag_cache) and a warm connection; a queue would spread tasks over every
                # process and make each one parse each DAG file again.
                member = self._idle.pop()
                if not member.exited.done():
                    member.busy = True
                    return member
            if self._broken:
                raise PoolBrokenError(self._broken)
            if self._closing:
                raise PoolBrokenError("the worker is shutting down")
            await self._wait_idle_change(None)

    async def _result_of(self, member: _Member) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()
        fd = member.conn.fileno()

        def wake() -> None:
            if not answered.done():
                answered.set_result(None)

        loop.add_reader(fd, wake)
        try:
            waits: set[asyncio.Future[Any]] = {answered, member.exited}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
        if not member.exited.done() or member.conn.poll(0):
            try:
                result: dict[str, Any] = member.conn.recv()
                return result
            except (EOFError, OSError):
                await member.exited
        pid = member.process.pid
        raise PoolProcessDiedError(
            f"pool process {pid} of worker {self.name} {describe_exit(member.exited.result())} while "
            "running this workload; its task process was killed with it and the worker replaced the "
            "pool process. Airflow's retries run the task again."
        )

    # -- watching and replacing pool processes ----------------------------------------------

    def _spawn(self) -> None:
        """Fork one pool process and watch its sentinel; on failure mark the pool broken."""
        assert self._loop is not None
        server_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_pool_process_main,
            args=(child_end, os.getpid(), self._target),
            name=f"{self.name}-pool",
            daemon=True,
        )
        try:
            process.start()
        except OSError as exc:
            server_end.close()
            self._broken = f"cannot start a pool process: {type(exc).__name__}: {exc}"
            log_event(log, "pool_broken", worker=self.name, error=self._broken)
            return
        finally:
            child_end.close()
        member = _Member(process=process, conn=server_end, exited=self._loop.create_future())
        self._members.add(member)
        self._loop.add_reader(process.sentinel, self._on_exit, member)
        self._idle.append(member)
        self._notify()

    def _on_exit(self, member: _Member) -> None:
        """A pool process ended: record it, replace it unless the pool is stopping."""
        assert self._loop is not None
        self._loop.remove_reader(member.process.sentinel)
        # The sentinel closes a moment before the kernel makes the process waitable.
        member.process.join(1.0)
        exitcode = member.process.exitcode
        member.exited.set_result(exitcode)
        self._members.discard(member)
        with contextlib.suppress(ValueError):
            self._idle.remove(member)
        if self._closing:
            return
        self._deaths += 1
        log_event(
            log,
            "pool_process_died",
            worker=self.name,
            pid=member.process.pid,
            exitcode=exitcode,
            how=describe_exit(exitcode),
            was_running_workload=member.busy,
        )
        if not member.busy:  # a busy one's pipe is read and closed by the run() waiting on it
            member.conn.close()
        self._spawn()
        if not self._broken:
            self._replacements += 1
            log_event(log, "pool_process_replaced", worker=self.name, pids=self.status().pids)
        self._notify()

    def _notify(self) -> None:
        if self._idle_changed is not None:
            self._idle_changed.set()

    async def _wait_idle_change(self, timeout: float | None) -> None:
        assert self._idle_changed is not None
        self._idle_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle_changed.wait(), timeout)
