"""A pool of pre-forked supervisor processes, each already holding an imported Airflow.

Airflow's task supervisor installs signal handlers, which Python allows only in a
process's main thread, and it forks the task process itself. So each task runs
in the main thread of a pool process that was forked from the warm server after
``import airflow``: a task costs a fork, not a new interpreter.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from airflow_knative.protocol import DispatchRequest, FinishedEvent, TaskTimings


def _prepare_pool_process() -> None:
    """Runs once in every pool process before its first task."""
    from airflow_knative.worker.exit_detection import install_fast_exit_detection

    install_fast_exit_detection()


def _pid() -> int:
    return os.getpid()


def run_task(request_json: bytes, server: str, received_at: float) -> dict[str, Any]:
    """Run one ``ExecuteTask`` workload through Airflow's supervisor; return a FinishedEvent dict.

    Runs inside a pool process. Everything the executor needs back (state, exit
    code, return value, timings) is collected by the XCom relay on the way.
    """
    import httpx
    from airflow.sdk.api.client import Client
    from airflow.sdk.execution_time.supervisor import supervise_task

    from airflow_knative.worker.workloads import parse_execute_task
    from airflow_knative.worker.xcom_relay import XComRelayTransport

    request = DispatchRequest.model_validate_json(request_json)
    workload = parse_execute_task(request.workload)
    ti = workload.ti
    relay = XComRelayTransport(
        inner=httpx.HTTPTransport(retries=0),
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index if ti.map_index is not None else -1,
        inline={(x.task_id, x.map_index): x.value for x in request.inline_xcoms},
    )
    error = None
    with Client(base_url=server, token=workload.token, transport=relay) as client:
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


class TaskPool:
    """The supervisor processes of one worker."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = ProcessPoolExecutor(
            max_workers=size,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_prepare_pool_process,
        )

    def warm_up(self) -> list[int]:
        """Fork every pool process now, before the first task pays for it; return their pids."""
        futures = [self._executor.submit(_pid) for _ in range(self.size)]
        return sorted({f.result() for f in futures})

    def submit(self, request_json: bytes, server: str, received_at: float) -> Future[dict[str, Any]]:
        """Queue one workload; the future resolves to a FinishedEvent dict."""
        return self._executor.submit(run_task, request_json, server, received_at)

    def shutdown(self) -> None:
        """Wait for running tasks, then stop the pool processes."""
        self._executor.shutdown(wait=True, cancel_futures=True)
