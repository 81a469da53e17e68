"""Parsing workloads with Airflow's own schema, so a worker accepts exactly what an executor sends."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask
    from pydantic import TypeAdapter


class UnsupportedWorkloadError(ValueError):
    """The workload is valid Airflow but not one a worker runs."""


@cache
def _adapter() -> TypeAdapter[Any]:
    from airflow.executors import workloads
    from pydantic import TypeAdapter

    return TypeAdapter(workloads.All)


def parse_execute_task(data: dict[str, Any]) -> ExecuteTask:
    """Validate ``data`` against ``airflow.executors.workloads.All``; require an ``ExecuteTask``.

    Raises ``pydantic.ValidationError`` for malformed input and
    :class:`UnsupportedWorkloadError` for other workload types.
    """
    from airflow.executors.workloads import ExecuteTask

    workload = _adapter().validate_python(data)
    if not isinstance(workload, ExecuteTask):
        raise UnsupportedWorkloadError(
            f"workload type {type(workload).__name__} is not run by airflow-knative workers; "
            "only ExecuteTask is"
        )
    return workload
