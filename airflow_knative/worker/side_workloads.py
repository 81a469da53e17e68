"""Executor callbacks (deadline alerts) and connection tests, run in a pool process.

Airflow's scheduler hands these to the executor like tasks (``ExecuteCallback``,
``TestConnection``); they run here through Airflow's own supervisors for them, the
same calls ``BaseExecutor.run_workload`` makes. Both report their own outcome to
Airflow's Execution API on the way (the connection test's result, the callback's
logs); the ``finished`` event tells the executor whether the supervisor succeeded,
which for callbacks becomes the callback's state.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_knative.protocol import FinishedEvent, TaskTimings


def supervise(workload: Any, server: str) -> int:
    """Run a callback or connection-test workload; return the supervisor's exit code."""
    from airflow.executors.workloads import ExecuteCallback, TestConnection

    if isinstance(workload, ExecuteCallback):
        from airflow.sdk.execution_time.callback_supervisor import supervise_callback

        return supervise_callback(
            id=workload.callback.id,
            callback_path=workload.callback.data.get("path", ""),
            callback_kwargs=workload.callback.data.get("kwargs", {}),
            dag_rel_path=workload.dag_rel_path,
            log_path=workload.log_path,
            bundle_info=workload.bundle_info,
            token=workload.token,
            server=server,
        )
    if isinstance(workload, TestConnection):
        from airflow.sdk.execution_time.connection_test_supervisor import supervise_connection_test

        return supervise_connection_test(
            connection_test_id=workload.connection_test_id,
            connection_id=workload.connection_id,
            timeout=workload.timeout,
            token=workload.token,
            server=server,
        )
    raise TypeError(f"not a callback or connection test: {type(workload).__name__}")


def run_side_workload(data: dict[str, Any], server: str, received_at: float) -> dict[str, Any]:
    """Run one callback or connection test; return a FinishedEvent dict (state success/failed)."""
    from airflow_knative.worker.workloads import parse_workload

    started_at = time.time()
    error = None
    try:
        exit_code = supervise(parse_workload(data), server)
    except Exception as exc:
        exit_code, error = 1, f"{type(exc).__name__}: {exc}"
    if exit_code != 0 and error is None:
        error = f"{data.get('type')} supervisor exited with code {exit_code}; see the worker's log"
    return FinishedEvent(
        exit_code=exit_code,
        state="success" if exit_code == 0 else "failed",
        timings=TaskTimings(received_at=received_at, started_at=started_at, finished_at=time.time()),
        error=error,
    ).model_dump(mode="json")
