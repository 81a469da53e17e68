"""``KnativeExecutor``: Airflow's executor interface on top of the :class:`Dispatcher`.

The scheduler calls this class from its own loop; every method here returns
without network I/O. Work goes to the dispatcher's thread, outcomes come back
through a queue that :meth:`KnativeExecutor.sync` drains on each heartbeat.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.executors.base_executor import BaseExecutor
from airflow.executors.workloads import ExecuteTask

from airflow_knative.events import log_event
from airflow_knative.executor.dispatcher import Dispatcher, DispatchOutcome
from airflow_knative.executor.prewarm import Prewarmer
from airflow_knative.routing import Router
from airflow_knative.settings import load_settings, read_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class KnativeExecutor(BaseExecutor):
    """Runs each task on the Knative service that serves it, over HTTP."""

    supports_ad_hoc_ti_run = True
    is_local = False
    serve_logs = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: queue.SimpleQueue[DispatchOutcome] = queue.SimpleQueue()
        self._dispatcher: Dispatcher | None = None
        self._prewarmer: Prewarmer | None = None

    def start(self) -> None:
        """Read ``[knative_executor]``, check the routing table and secret, start the dispatcher."""
        settings = load_settings()
        router = Router(settings.routing_path)
        router.table()  # a missing or malformed routing file stops the scheduler at start-up
        secret = read_secret(settings.secret_file, what="[knative_executor] secret_file")
        self._dispatcher = Dispatcher(
            settings,
            secret,
            router,
            max_connections=self.parallelism or None,
            on_outcome=self._outcomes.put,
        )
        self._dispatcher.start()
        if settings.prewarm and settings.prewarm_max_services > 0:
            # Its own Router: the pre-warm thread never shares state with the dispatcher's.
            self._prewarmer = Prewarmer(
                Router(settings.routing_path), settings.prewarm_max_services, settings.accept_timeout
            )
            self._prewarmer.start()
        self.log.info(
            "KnativeExecutor started: routing file %s, parallelism %s, pre-warm %s",
            settings.routing_file,
            self.parallelism,
            f"up to {settings.prewarm_max_services} services ahead" if self._prewarmer else "off",
        )

    def queue_workload(self, workload: Any, session: Session) -> None:
        """Accept task workloads; refuse callbacks with a message that says what to do instead."""
        if not isinstance(workload, ExecuteTask):
            raise NotImplementedError(
                f"KnativeExecutor runs task workloads only, not {type(workload).__name__}: run "
                "callbacks on a second executor, e.g. "
                "[core] executor = airflow_knative.executor.KnativeExecutor,LocalExecutor"
            )
        super().queue_workload(workload, session)

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        """Move workloads from queued to running and hand them to the dispatcher (no I/O here)."""
        assert self._dispatcher is not None, "KnativeExecutor.start() was not called"
        for workload in workload_items:
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            self.running.add(key)
            self._dispatcher.submit(workload)
            if self._prewarmer is not None:
                self._prewarmer.task_dispatched(workload)

    def sync(self) -> None:
        """Report the outcomes the dispatcher collected since the last heartbeat."""
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            self._log_reported(outcome)
            if outcome.state == "success":
                self.success(outcome.key, outcome.info)
            elif outcome.state == "failed":
                self.fail(outcome.key, outcome.info)
            else:  # lost: Airflow's heartbeat checks own the task's state from here
                self.running.discard(outcome.key)

    def _log_reported(self, outcome: DispatchOutcome) -> None:
        """One structured line when the scheduler learns a task's outcome (read by the benchmarks)."""
        key = outcome.key
        log_event(
            self.log,
            "knative_task_reported",
            dag_id=key.dag_id,
            task_id=key.task_id,
            run_id=key.run_id,
            map_index=key.map_index,
            try_number=key.try_number,
            state=outcome.state,
            reported_at=time.time(),
        )

    def end(self) -> None:
        """Stop dispatching; report what is still known, leave running tasks to their workers."""
        if self._prewarmer is not None:
            self._prewarmer.stop()
            self._prewarmer = None
        if self._dispatcher is not None:
            streaming = self._dispatcher.stop()
            if streaming:
                self.log.warning(
                    "KnativeExecutor stopped with %d task(s) still running on workers; their outcome is "
                    "left to Airflow's task heartbeats",
                    streaming,
                )
            self._dispatcher = None
        self.sync()

    def terminate(self) -> None:
        """Same as :meth:`end`: tasks run elsewhere and are not killed from here."""
        self.end()
