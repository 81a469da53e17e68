"""Pre-warm along the DAG: wake the services of a task's downstream tasks when it is dispatched.

A service scaled to zero pays a cold start (on Knative: pod scheduling, image pull,
container start, ``import airflow``) when its first request arrives. The executor
knows which tasks come next long before they are queued, so when it dispatches a
task it sends ``GET <service url>/readyz`` to the services of the tasks below it
(nearest first, at most ``prewarm_max_services``). On Knative that request goes
through the activator, which scales the service from zero and holds the request
until a pod is ready; by the time the downstream task is dispatched its pod is
(nearly) warm. A readiness probe runs no task, so a pre-warm can never run one.

Everything here runs on its own thread and event loop: the scheduler thread only
hands over ``(dag_id, dag_version_id, task_id)`` and never waits, and a slow or
failing wake-up never delays or fails a dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from airflow_knative.events import log_event
from airflow_knative.protocol import PREWARM_DISTANCE_HEADER, READINESS_PATH
from airflow_knative.routing import Router, RoutingError, RoutingFileError
from airflow_knative.task_config import InvalidTaskConfigError

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask

log = logging.getLogger("airflow_knative.executor.prewarm")


@dataclass(frozen=True)
class TaskShape:
    """What the pre-warm needs of one task: which tasks follow it, and how they are routed."""

    downstream: frozenset[str]
    executor_config: Any


DagShape = dict[str, TaskShape]


def load_dag_shape(dag_version_id: str) -> DagShape:
    """Read ``task_id -> TaskShape`` of one DAG version from the serialized DAG; empty if unreadable."""
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            dag = DBDagBag().get_dag(uuid.UUID(dag_version_id), session=session)
    except Exception:  # a pre-warm is an optimisation: without it tasks only start cold
        log.warning("cannot read DAG version %s; no pre-warm for it", dag_version_id, exc_info=True)
        return {}
    if dag is None:
        return {}
    return {
        task_id: TaskShape(frozenset(task.downstream_task_ids), getattr(task, "executor_config", None))
        for task_id, task in dag.task_dict.items()
    }


def tasks_below(shape: DagShape, task_id: str) -> list[tuple[str, int]]:
    """Every task downstream of ``task_id`` with its distance (1 = direct), nearest first, each once."""
    seen = {task_id}
    order: list[tuple[str, int]] = []
    queue = deque((below, 1) for below in sorted(shape.get(task_id, TaskShape(frozenset(), None)).downstream))
    while queue:
        current, distance = queue.popleft()
        if current in seen:
            continue
        seen.add(current)
        order.append((current, distance))
        following = shape.get(current, TaskShape(frozenset(), None)).downstream - seen
        queue.extend((below, distance + 1) for below in sorted(following))
    return order


class Prewarmer:
    """Sends the wake-up requests; see the module docstring."""

    def __init__(
        self,
        router: Router,
        max_services: int,
        request_timeout: float,
        shape_loader: Callable[[str], DagShape] = load_dag_shape,
        rewake_after: float = 10.0,
    ) -> None:
        self.router = router
        self.max_services = max_services
        self.request_timeout = request_timeout
        self.rewake_after = rewake_after
        self._shape_loader = shape_loader
        self._shapes: dict[str, DagShape] = {}
        self._woken: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="knative-prewarm", daemon=True)
        self._client: httpx.AsyncClient | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the thread and its HTTP client."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    def task_dispatched(self, workload: ExecuteTask) -> None:
        """Called from the scheduler thread for each dispatched task; returns at once."""
        ti = workload.ti
        self._loop.call_soon_threadsafe(self._spawn, ti.dag_id, str(ti.dag_version_id), ti.task_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel outstanding wake-ups and stop the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _open(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._client = httpx.AsyncClient(
            limits=limits, timeout=httpx.Timeout(self.request_timeout, connect=5.0)
        )

    async def _close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, dag_id: str, dag_version_id: str, task_id: str) -> None:
        task = self._loop.create_task(self._wake_below(dag_id, dag_version_id, task_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _wake_below(self, dag_id: str, dag_version_id: str, task_id: str) -> None:
        shape = self._shapes.get(dag_version_id)
        if shape is None:
            shape = await asyncio.to_thread(self._shape_loader, dag_version_id)
            if len(self._shapes) >= 256:
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[dag_version_id] = shape
        for url, distance in self._urls_below(dag_id, shape, task_id).items():
            now = time.monotonic()
            if now - self._woken.get(url, -1e9) < self.rewake_after:
                continue
            self._woken[url] = now
            self._spawn_wake(url, distance, dag_id, task_id)

    def _urls_below(self, dag_id: str, shape: DagShape, task_id: str) -> dict[str, int]:
        """The distinct service URLs of the tasks below, each with its distance, nearest first.

        At most ``max_services`` of them.
        """
        urls: dict[str, int] = {}
        for below, distance in tasks_below(shape, task_id):
            if len(urls) >= self.max_services:
                break
            try:
                url = self.router.url_for(dag_id, below, shape[below].executor_config)
            except (RoutingError, RoutingFileError, InvalidTaskConfigError):
                continue  # the dispatch of that task reports the problem itself
            urls.setdefault(url, distance)
        return urls

    def _spawn_wake(self, url: str, distance: int, dag_id: str, task_id: str) -> None:
        task = self._loop.create_task(self._wake(url, distance, dag_id, task_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _wake(self, url: str, distance: int, dag_id: str, task_id: str) -> None:
        """One readiness GET; held by Knative's activator until a pod is ready. The answer is ignored.

        The wake-ups of one dispatch go out concurrently and may arrive in any order, so each
        says how far below the dispatched task its service is: where starts are rationed (the
        local activator) the nearest starts first.
        """
        assert self._client is not None
        sent_at = time.time()
        headers = {PREWARM_DISTANCE_HEADER: str(distance)}
        try:
            answer = await self._client.get(url.rstrip("/") + READINESS_PATH, headers=headers)
            status: int | str = answer.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        log_event(
            log,
            "knative_prewarm",
            dag_id=dag_id,
            after_task=task_id,
            service_url=url,
            distance=distance,
            status=status,
            sent_at=sent_at,
            answered_at=time.time(),
        )
