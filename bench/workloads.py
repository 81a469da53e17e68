"""Airflow's own workload model, built as the scheduler builds it, without a database.

Shared by the benchmarks (bench/dispatch.py) and the unit tests (tests/unit/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import uuid6
from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstanceDTO

#: A run id shaped like Airflow's manual runs: ``:`` and ``+`` must survive every URL on the way.
RUN_ID = "manual__2025-01-01T00:00:00+00:00"
DAG_ID = "compute_avg_distributed"

WorkloadFactory = Callable[..., ExecuteTask]


def build_workload(
    task_id: str = "extract",
    *,
    dag_id: str = DAG_ID,
    run_id: str = RUN_ID,
    map_index: int = -1,
    try_number: int = 1,
    dag_version_id: uuid.UUID | None = None,
    executor_config: dict[str, Any] | None = None,
) -> ExecuteTask:
    """Return a valid ``ExecuteTask`` as the scheduler would hand it to an executor."""
    ti = TaskInstanceDTO(
        id=uuid6.uuid7(),
        task_id=task_id,
        dag_id=dag_id,
        run_id=run_id,
        try_number=try_number,
        dag_version_id=dag_version_id or uuid.uuid4(),
        map_index=map_index,
        pool_slots=1,
        queue="default",
        priority_weight=1,
        executor_config=executor_config,
    )
    return ExecuteTask(
        token="a-jwt-the-execution-api-would-check",
        dag_rel_path="dags/compute_avg.py",
        bundle_info=BundleInfo(name="dags-folder", version=None),
        log_path=f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/attempt={try_number}.log",
        ti=ti,
    )
