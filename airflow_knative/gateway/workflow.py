"""A workflow call end to end: make the DAG runnable, trigger it, wait, read its output.

Holds the gateway's per-DAG memory (which DAGs are known to be unpaused, each
DAG's leaf tasks) so that a steady stream of calls to one DAG costs Airflow a
trigger, the state polls and the output reads, and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from airflow_knative.airflow_rest import segment
from airflow_knative.gateway.airflow_api import (
    AirflowApi,
    AirflowApiError,
    AirflowBadResponse,
    AirflowNotFound,
    AirflowSession,
    DagRunInfo,
    TaskInfo,
    TaskInstanceInfo,
    is_transient,
    task_log_path,
)
from airflow_knative.gateway.auth import BasicCredentials
from airflow_knative.gateway.errors import GatewayError, from_airflow
from airflow_knative.gateway.output import (
    FAILED_TASK_STATES,
    SUCCESS,
    TERMINAL_RUN_STATES,
    assemble_output,
    failed_instances,
    failed_tasks,
    leaf_tasks,
    log_error_summary,
    mapped_indexes,
    xcom_output,
)
from airflow_knative.gateway.settings import GatewaySettings

#: Failed task instances whose logs one failed-run answer reads (a mapped task can fail thousands).
MAX_LOGS_READ = 10
UPSTREAM_FAILED_REASON = "not run: an upstream task failed"

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """A dict whose entries vanish ``ttl`` seconds after being set.

    Used for facts about DAGs that change rarely but can change (a DAG re-paused
    by an operator, a new DAG version with other leaves): they are re-read at most
    once per ``ttl``.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        """The value for ``key`` if set less than ``ttl`` ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            del self._entries[key]
            return None
        return entry[0]

    def set(self, key: K, value: V) -> None:
        """Remember ``value`` for ``ttl`` seconds (not at all when ``ttl`` is 0)."""
        if self._ttl > 0:
            self._entries[key] = (value, self._clock() + self._ttl)

    def discard(self, key: K) -> None:
        """Forget ``key`` now."""
        self._entries.pop(key, None)


def poll_delay(poll_interval: float, waiting: int, max_polls_per_second: float) -> float:
    """Seconds between two state reads of one waiting call.

    ``poll_interval`` while few calls wait; once ``waiting`` calls at that pace would
    pass ``max_polls_per_second``, each call slows down so the total stays at the cap.
    Under such load Airflow itself is the bottleneck, and polling it harder only
    takes CPU and database connections from the tasks being waited for.
    """
    return max(poll_interval, waiting / max_polls_per_second)


@dataclass
class _Progress:
    """What one waiting call has seen so far: the run's last state and the last failed read."""

    run: DagRunInfo
    last_error: str | None = None


class ClientGone(Exception):
    """The caller disconnected while waiting: stop polling for an answer nobody reads."""


@dataclass(frozen=True)
class Answer:
    """A status code and JSON body for the caller."""

    status: int
    body: dict[str, Any]


def status_url(root_path: str, dag_id: str, run_id: str) -> str:
    """Where a caller polls a run: ``/runs/{dag_id}/{run_id}``, both quoted (run ids hold ``+``)."""
    return f"{root_path}/runs/{segment(dag_id)}/{segment(run_id)}"


def unknown_dag(dag_id: str, airflow_url: str) -> GatewayError:
    """404 for a DAG Airflow does not know."""
    return GatewayError(
        404,
        f"DAG {dag_id!r} is not known to Airflow at {airflow_url}: check the dag_id and that "
        "its file is in the DAGs folder and parses without errors",
        extra={"dag_id": dag_id},
    )


def unknown_run(dag_id: str, run_id: str) -> GatewayError:
    """404 for a run id (or DAG) Airflow does not know."""
    return GatewayError(
        404,
        f"no run {run_id!r} of DAG {dag_id!r}: use the run_id or status_url from the /runWorkflow answer",
        extra={"dag_id": dag_id, "run_id": run_id},
    )


class WorkflowService:
    """The steps of a workflow call, shared by every request of the gateway."""

    def __init__(self, api: AirflowApi, settings: GatewaySettings) -> None:
        self._api = api
        self._settings = settings
        self._unpaused: ExpiringMap[str, bool] = ExpiringMap(settings.dag_cache_ttl)
        self._leaves: ExpiringMap[str, list[TaskInfo]] = ExpiringMap(settings.dag_cache_ttl)
        self._waiting = 0

    def session(self, credentials: BasicCredentials) -> AirflowSession:
        """The Airflow API as seen by one caller."""
        return self._api.as_user(credentials)

    async def start(self, session: AirflowSession, dag_id: str, data: Any) -> DagRunInfo:
        """Trigger a run of ``dag_id`` with conf ``{"data": data}``, unpausing the DAG first."""
        await self._ensure_unpaused(session, dag_id)
        try:
            return await session.trigger_run(dag_id, {"data": data})
        except AirflowNotFound:
            self._unpaused.discard(dag_id)
            raise unknown_dag(dag_id, self._api.base_url) from None
        except AirflowBadResponse as exc:
            if exc.status == 400:  # conf rejected by the DAG's params: the caller's input
                raise GatewayError(
                    400,
                    f"Airflow refused to run DAG {dag_id!r} with this input: {exc.detail}",
                    extra={"dag_id": dag_id},
                ) from None
            raise from_airflow(exc) from None
        except AirflowApiError as exc:
            raise from_airflow(exc) from None

    async def _ensure_unpaused(self, session: AirflowSession, dag_id: str) -> None:
        """Unpause a paused DAG (its runs would stay queued); skipped for DAGs seen unpaused lately.

        Reading the DAG also tells an unknown DAG (404) from any later failure.
        """
        if self._unpaused.get(dag_id):
            return
        try:
            dag = await session.get_dag(dag_id)
            if dag.is_paused:
                await session.unpause_dag(dag_id)
        except AirflowApiError as exc:
            raise from_airflow(exc, not_found=unknown_dag(dag_id, self._api.base_url)) from None
        self._unpaused.set(dag_id, True)

    async def current(self, session: AirflowSession, dag_id: str, run_id: str) -> DagRunInfo:
        """The run's state now."""
        try:
            return await session.get_run(dag_id, run_id)
        except AirflowApiError as exc:
            raise from_airflow(exc, not_found=unknown_run(dag_id, run_id)) from None

    def poll_delay(self) -> float:
        """Seconds before a waiting call's next state read (see :func:`poll_delay`)."""
        settings = self._settings
        return poll_delay(settings.poll_interval, self._waiting, settings.max_polls_per_second)

    async def wait(
        self, session: AirflowSession, run: DagRunInfo, client_gone: Callable[[], Awaitable[bool]]
    ) -> tuple[DagRunInfo, bool, str | None]:
        """Poll the run until it ends or ``wait_timeout`` passes.

        Returns ``(last seen run, ended, last transient error)``. Raises
        :class:`ClientGone` if the caller hung up, so no poll is made for nobody.
        """
        progress = _Progress(run)
        self._waiting += 1
        try:
            async with asyncio.timeout(self._settings.wait_timeout):
                await self._poll_until_ended(session, progress, client_gone)
        except TimeoutError:
            return progress.run, False, progress.last_error
        finally:
            self._waiting -= 1
        return progress.run, True, None

    async def _poll_until_ended(
        self, session: AirflowSession, progress: _Progress, client_gone: Callable[[], Awaitable[bool]]
    ) -> None:
        """Read the run's state every :meth:`poll_delay` until it ends.

        The run exists and goes on whatever the gateway does, so a transient failure
        (Airflow overloaded or restarting) is retried; only failing for longer than
        ``airflow_timeout`` in a row gives up (502).
        """
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        dag_id, run_id = progress.run.dag_id, progress.run.run_id
        while progress.run.state not in TERMINAL_RUN_STATES:
            await asyncio.sleep(self.poll_delay())
            if await client_gone():
                raise ClientGone
            try:
                progress.run = await session.get_run(dag_id, run_id)
            except AirflowApiError as exc:
                now = loop.time()
                failing_since = now if failing_since is None else failing_since
                if not is_transient(exc) or now - failing_since >= self._settings.airflow_timeout:
                    raise from_airflow(exc, not_found=unknown_run(dag_id, run_id)) from None
                progress.last_error = str(exc)
                continue
            failing_since = None

    async def finished_answer(self, session: AirflowSession, run: DagRunInfo) -> Answer:
        """The answer for an ended run: 200 with its output, or 500 listing the failed tasks."""
        try:
            if run.state == SUCCESS:
                output = await self._output(session, run)
                return Answer(
                    200, {"output": output, "dag_id": run.dag_id, "run_id": run.run_id, "state": run.state}
                )
            instances = await session.list_task_instances(run.dag_id, run.run_id, states=FAILED_TASK_STATES)
        except AirflowApiError as exc:
            raise from_airflow(exc) from None
        details = await self._failure_details(session, run, instances)
        return Answer(
            500,
            {
                "error": "run failed",
                "dag_id": run.dag_id,
                "run_id": run.run_id,
                "state": run.state,
                "failed_tasks": failed_tasks(instances, details),
            },
        )

    async def _failure_details(
        self, session: AirflowSession, run: DagRunInfo, instances: list[TaskInstanceInfo]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """Why each failed task failed (from its log) and where that log is; read concurrently."""
        details: dict[tuple[str, int], dict[str, Any]] = {}
        failed = [ti for ti in failed_instances(instances) if ti.state == "failed"]
        for ti in failed_instances(instances):
            if ti.state != "failed":
                details[(ti.task_id, ti.map_index)] = {"error": UPSTREAM_FAILED_REASON}
        for ti in failed:
            path = task_log_path(run.dag_id, run.run_id, ti.task_id, max(ti.try_number, 1), ti.map_index)
            details[(ti.task_id, ti.map_index)] = {
                "try_number": ti.try_number,
                "log_path": path,
                "log_url": f"{self._api.base_url}{path}",
            }
        summaries = await asyncio.gather(
            *(self._log_summary(session, run, ti) for ti in failed[:MAX_LOGS_READ])
        )
        for ti, summary in zip(failed, summaries, strict=False):
            details[(ti.task_id, ti.map_index)]["error"] = summary
        return details

    async def _log_summary(self, session: AirflowSession, run: DagRunInfo, ti: TaskInstanceInfo) -> str:
        """The error line of one failed attempt's log, or why there is none."""
        attempt = TaskInstanceInfo(ti.task_id, ti.map_index, ti.state, max(ti.try_number, 1))
        try:
            content = await session.get_task_log(attempt, run.dag_id, run.run_id)
        except AirflowApiError as exc:
            return f"(log not readable: {exc})"
        return log_error_summary(content) or "(the log names no error: read it at log_path)"

    async def _output(self, session: AirflowSession, run: DagRunInfo) -> Any:
        """Return values of the DAG's leaf tasks, read concurrently."""
        leaves = await self._leaf_tasks(session, run.dag_id)
        values = await asyncio.gather(*(self._leaf_value(session, run, leaf) for leaf in leaves))
        return assemble_output(
            leaves, {leaf.task_id: value for leaf, value in zip(leaves, values, strict=True)}
        )

    async def _leaf_tasks(self, session: AirflowSession, dag_id: str) -> list[TaskInfo]:
        leaves = self._leaves.get(dag_id)
        if leaves is None:
            leaves = leaf_tasks(await session.list_tasks(dag_id))
            self._leaves.set(dag_id, leaves)
        return leaves

    async def _leaf_value(self, session: AirflowSession, run: DagRunInfo, leaf: TaskInfo) -> Any:
        """One leaf's value; for a mapped leaf, the list of its instances' values by map index.

        An unmapped task inside a mapped task group is not flagged ``is_mapped`` by
        Airflow, so a missing unmapped value falls back to looking for mapped instances.
        """
        if not leaf.is_mapped:
            xcom = await session.get_return_value(run.dag_id, run.run_id, leaf.task_id)
            if xcom.found:
                return xcom_output(xcom)
        instances = await session.list_task_instances(run.dag_id, run.run_id, task_id=leaf.task_id)
        indexes = mapped_indexes(instances)
        if not indexes and not leaf.is_mapped:
            return None
        xcoms = await session.get_return_values(run.dag_id, run.run_id, leaf.task_id, indexes)
        return [xcom_output(xcom) for xcom in xcoms]
