"""Parsing workloads with Airflow's own schema, so a worker accepts exactly what an executor sends."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask
    from pydantic import TypeAdapter

#: Workload types a worker runs: tasks, executor callbacks (deadline alerts), connection tests.
SUPPORTED_TYPES = ("ExecuteTask", "ExecuteCallback", "TestConnection")


class UnsupportedWorkloadError(ValueError):
    """The workload is valid Airflow but not one a worker runs."""


@cache
def _adapter() -> TypeAdapter[Any]:
    from airflow.executors import workloads
    from pydantic import TypeAdapter

    return TypeAdapter(workloads.All)


def parse_workload(data: dict[str, Any]) -> Any:
    """Validate ``data`` against ``airflow.executors.workloads.All``; require a type a worker runs.

    Raises ``pydantic.ValidationError`` for malformed input and
    :class:`UnsupportedWorkloadError` for other workload types.
    """
    workload = _adapter().validate_python(data)
    kind = type(workload).__name__
    if kind not in SUPPORTED_TYPES:
        raise UnsupportedWorkloadError(
            f"workload type {kind} is not run by airflow-knative workers; only {', '.join(SUPPORTED_TYPES)}"
        )
    return workload


def parse_execute_task(data: dict[str, Any]) -> ExecuteTask:
    """Like :func:`parse_workload`, but require an ``ExecuteTask``."""
    from airflow.executors.workloads import ExecuteTask

    workload = _adapter().validate_python(data)
    if not isinstance(workload, ExecuteTask):
        raise UnsupportedWorkloadError(
            f"workload type {type(workload).__name__} is not a task; expected ExecuteTask"
        )
    return workload


def is_task_workload(data: dict[str, Any]) -> bool:
    """True for a (serialised) ``ExecuteTask``, the default type of a workload without ``type``."""
    return data.get("type", "ExecuteTask") == "ExecuteTask"


def workload_ids(workload: Any) -> dict[str, Any]:
    """The fields that identify a workload in the worker's log lines."""
    ti = getattr(workload, "ti", None)
    if ti is not None:
        return {
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "run_id": ti.run_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
            "try_number": ti.try_number,
        }
    return {"workload": type(workload).__name__, "key": str(workload.key), "name": workload.display_name}
