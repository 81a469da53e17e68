"""``KnativeExecutor``: Airflow's executor interface on top of the :class:`Dispatcher`.

The scheduler calls this class from its own loop; every method here returns
without network I/O. Work goes to the dispatcher's thread, outcomes come back
through a queue that :meth:`KnativeExecutor.sync` drains on each heartbeat.

Tasks this executor no longer streams - adopted from a scheduler that stopped,
or whose stream broke after the worker accepted them - keep their slot in
``running`` and are watched in the database (:class:`TaskWatch`) until Airflow
records their end; see docs/reliability.md.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.executors.base_executor import BaseExecutor
from airflow.executors.workloads import ExecuteTask
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from airflow_knative.events import log_event
from airflow_knative.executor.dispatcher import Dispatcher, DispatchOutcome
from airflow_knative.executor.metrics import ExecutorMetrics
from airflow_knative.executor.prewarm import Prewarmer
from airflow_knative.executor.retry_policy import time_limits_outlast_token
from airflow_knative.executor.side_workloads import side_workload_url
from airflow_knative.executor.task_watch import TaskWatch, WatchedEnd
from airflow_knative.routing import Router
from airflow_knative.settings import ExecutorSettings, load_settings, read_secret

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance


class KnativeExecutor(BaseExecutor):
    """Runs each task on the Knative service that serves it, over HTTP."""

    supports_ad_hoc_ti_run = True
    supports_callbacks = True  # ExecuteCallback (deadline alerts) runs on a worker
    supports_connection_test = True  # so does the UI's "Test connection"
    supports_multi_team = True  # each team's executor reads its own section through self.conf
    is_local = False
    serve_logs = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: queue.SimpleQueue[DispatchOutcome] = queue.SimpleQueue()
        self._dispatcher: Dispatcher | None = None
        self._prewarmer: Prewarmer | None = None
        self._watch = TaskWatch()
        self._settings: ExecutorSettings | None = None
        self.metrics = ExecutorMetrics(self.team_name)

    def start(self) -> None:
        """Read this team's ``[knative_executor]``, check the routing table and secret, start dispatching."""
        settings = self._settings = load_settings(self.conf)
        router = Router(settings.routing_path)
        router.table()  # a missing or malformed routing file stops the scheduler at start-up
        secret = read_secret(settings.secret_file, what="[knative_executor] secret_file")
        self._warn_about_time_limits(settings)
        self._watch = TaskWatch(settings.watch_interval, settings.watch_batch_size)
        self._dispatcher = Dispatcher(
            settings,
            secret,
            router,
            max_connections=self.parallelism or None,
            on_outcome=self._outcomes.put,
            task_log_folder=_task_log_folder(),
            metrics=self.metrics,
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

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        """Move workloads from queued to running and hand them to the dispatcher (no I/O here)."""
        assert self._dispatcher is not None, "KnativeExecutor.start() was not called"
        for workload in workload_items:
            if not isinstance(workload, ExecuteTask):
                self._process_side_workload(workload)
                continue
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            self.running.add(key)
            self._dispatcher.submit(workload)
            if self._prewarmer is not None:
                self._prewarmer.task_dispatched(workload)

    def _process_side_workload(self, workload: Any) -> None:
        """Send a callback or connection test to its service (executor/side_workloads.py)."""
        assert self._dispatcher is not None and self._settings is not None
        key = workload.key
        self.queued_callbacks.pop(key, None)
        self.queued_connection_tests.pop(key, None)
        self.running.add(key)
        if workload.running_state is not None:
            self.change_state(key, workload.running_state, remove_running=False)
        router, configured = self._dispatcher.router, self._settings.callback_service

        def url_of() -> str:
            return side_workload_url(router.table(), workload, configured, str(router.path))

        self._dispatcher.submit_side(key, workload.model_dump_json(), workload.token, url_of)

    def sync(self) -> None:
        """Report the outcomes the dispatcher collected, then check watched tasks in the database."""
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                break
            self._log_reported(outcome)
            if outcome.key not in self.running:
                continue  # revoked meanwhile: Airflow has moved the task instance on
            if outcome.state == "success":
                self.success(outcome.key, outcome.info)
            elif outcome.state == "failed":
                self.fail(outcome.key, outcome.info)
            elif not isinstance(outcome.key, TaskInstanceKey):  # a lost callback or connection test
                self.fail(outcome.key, outcome.info)  # nothing else would ever end it
            elif outcome.ti_id is not None:  # lost: the task may still run; keep its slot, watch it
                self._watch.add(outcome.key, outcome.ti_id)
            else:
                self.running.discard(outcome.key)
        for end in self._watch.check():
            self._report_watched_end(end)
        if self._dispatcher is not None:
            self.metrics.tasks_in_flight(self._dispatcher.in_flight, len(self._watch))

    def _report_watched_end(self, end: WatchedEnd) -> None:
        """A watched task's try ended in Airflow: free its slot and tell the scheduler, as for any task."""
        if end.key not in self.running:
            return
        self.log.info("watched task %s ended in Airflow with state %s", end.key, end.state)
        self._log_reported(DispatchOutcome(end.key, "success" if end.state == "success" else "failed"))
        if end.state == "success":
            self.success(end.key, None)
        elif end.state is None:  # the try is gone (reset or cleared): nothing to report, just free the slot
            self.running.discard(end.key)
        else:
            self.fail(end.key, f"task instance is {end.state} in Airflow")

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopt the running tasks of a scheduler that stopped; hand back the queued ones to be reset.

        A running task instance keeps running on its worker (a Knative pod cannot
        be addressed, so nothing is re-sent): this executor counts it in
        ``running`` and watches its state until Airflow records its end, which the
        task reports itself, or Airflow's task heartbeat timeout decides.

        A queued task instance may never have reached a worker (the old
        dispatcher may have been retrying it), so it is returned: the scheduler
        resets it and schedules a new try. That cannot run the task twice: the
        reset gives the task instance a new id, and the Execution API refuses to
        start the old workload.
        """
        not_adopted: list[TaskInstance] = []
        for ti in tis:
            if ti.state == TaskInstanceState.RUNNING:
                key = ti.key
                self.running.add(key)
                self._watch.add(key, str(ti.id))
                self.log.info("adopted running task %s (external id %s)", key, ti.external_executor_id)
            else:
                not_adopted.append(ti)
        self.metrics.adopted(running=len(tis) - len(not_adopted), reset=len(not_adopted))
        return not_adopted

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Forget ``ti`` (stuck in queued): stop dispatching it and free its slot, without an event."""
        key = ti.key
        self.queued_tasks.pop(key, None)
        self.running.discard(key)
        self._watch.discard(key)
        if self._dispatcher is not None:
            self._dispatcher.revoke(key)
        self.log.info("revoked %s: Airflow's stuck-in-queued handling moves it on", key)

    def _warn_about_time_limits(self, settings: ExecutorSettings) -> None:
        """Say when the dispatch limits outlast the workload token (they are capped at it per task)."""
        from airflow.configuration import conf

        token_life = conf.getfloat("scheduler", "task_queued_timeout", fallback=600.0)
        if time_limits_outlast_token(
            settings.dispatch_deadline, settings.accept_timeout, settings.token_margin, token_life
        ):
            self.log.warning(
                "[knative_executor] dispatch_deadline (%ss) + accept_timeout (%ss) outlast the workload "
                "token ([scheduler] task_queued_timeout = %ss, less token_margin %ss): each task's "
                "dispatch stops at its token's expiry instead",
                settings.dispatch_deadline,
                settings.accept_timeout,
                token_life,
                settings.token_margin,
            )

    def _log_reported(self, outcome: DispatchOutcome) -> None:
        """One structured line when the scheduler learns a task's outcome (read by the benchmarks)."""
        key = outcome.key
        if not isinstance(key, TaskInstanceKey):
            log_event(
                self.log,
                "knative_side_workload_reported",
                key=repr(key),
                state=outcome.state,
                info=outcome.info,
            )
            return
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


def _task_log_folder() -> Path | None:
    """Airflow's ``[logging] base_log_folder``, where the executor writes why a task never ran."""
    from airflow.configuration import conf

    folder = conf.get("logging", "base_log_folder", fallback="")
    return Path(folder) if folder else None
