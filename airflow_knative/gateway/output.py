"""Pure logic turning a finished run's tasks and return values into the gateway's answer.

Kept apart from any I/O so that the rules (which tasks make the output, how a
mapped task's values are ordered, which task instances count as failed) can be
tested without an Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_knative.gateway.airflow_api import TaskInfo, TaskInstanceInfo, XComValue

SUCCESS = "success"
FAILED = "failed"
#: Run states after which nothing changes any more.
TERMINAL_RUN_STATES = frozenset({SUCCESS, FAILED})
#: Task instance states reported in a failed run's answer.
FAILED_TASK_STATES = ("failed", "upstream_failed")

# Airflow's serde envelope (airflow.sdk.serde) around values JSON has no type for.
_CLASSNAME = "__classname__"
_DATA = "__data__"
_JSON_ARRAY_CLASSES = frozenset({"builtins.tuple", "builtins.set", "builtins.frozenset"})


def leaf_tasks(tasks: Iterable[TaskInfo]) -> list[TaskInfo]:
    """Tasks with no downstream task: their return values are the workflow's output."""
    return [task for task in tasks if not task.downstream_task_ids]


def decode_value(value: Any) -> Any:
    """Unwrap Airflow's serde envelope for tuples and sets, which the caller expects as arrays.

    A task returning ``(1, 2)`` is stored as
    ``{"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}``;
    the caller gets ``[1, 2]``. Other envelopes (datetimes, dataclasses...) are
    returned as stored: decoding them needs Airflow, which the gateway does not import.
    """
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if isinstance(value, dict):
        if value.get(_CLASSNAME) in _JSON_ARRAY_CLASSES and isinstance(value.get(_DATA), list):
            return [decode_value(item) for item in value[_DATA]]
        return {key: decode_value(item) for key, item in value.items()}
    return value


def xcom_output(xcom: XComValue) -> Any:
    """The value a task instance contributes: its decoded return value, or null if it pushed none."""
    return decode_value(xcom.value) if xcom.found else None


def mapped_indexes(instances: Iterable[TaskInstanceInfo]) -> list[int]:
    """Map indexes of a mapped task's expanded instances, in order.

    An expansion over an empty list leaves only the unexpanded placeholder
    (map index -1), so the result is empty and the task's output is ``[]``.
    """
    return sorted({ti.map_index for ti in instances if ti.map_index >= 0})


def assemble_output(leaves: Sequence[TaskInfo], values: Mapping[str, Any]) -> Any:
    """One leaf: its value. Several: ``{task_id: value}``. ``values`` is keyed by task id."""
    if len(leaves) == 1:
        return values.get(leaves[0].task_id)
    return {leaf.task_id: values.get(leaf.task_id) for leaf in leaves}


def failed_instances(instances: Iterable[TaskInstanceInfo]) -> list[TaskInstanceInfo]:
    """Task instances that failed or could not run because an upstream failed, stably ordered."""
    chosen = [ti for ti in instances if ti.state in FAILED_TASK_STATES]
    chosen.sort(key=lambda ti: (FAILED_TASK_STATES.index(ti.state or ""), ti.task_id, ti.map_index))
    return chosen


def failed_tasks(
    instances: Iterable[TaskInstanceInfo], details: Mapping[tuple[str, int], Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The ``failed_tasks`` of a failed run's answer; ``details`` (error, log) by (task_id, map_index)."""
    return [
        {
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "state": ti.state,
            **(details or {}).get((ti.task_id, ti.map_index), {}),
        }
        for ti in failed_instances(instances)
    ]


#: Log levels whose entries can say why a task failed.
_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})


def log_error_summary(content: Sequence[Any]) -> str | None:
    """The line that says why a task failed, from its Airflow log.

    Airflow 3 task logs are structured: an exception is logged with
    ``error_detail``, a list whose first element is the exception that ended the
    task (``exc_type``, ``exc_value``). Without one, the last error-level message
    is the reason (e.g. an executor that could not hand the task to a worker). The
    last exception in the log wins: it is the one that ended the attempt.
    """
    exception: str | None = None
    last_error: str | None = None
    for entry in content:
        if not isinstance(entry, Mapping):
            continue
        details = entry.get("error_detail")
        if isinstance(details, list) and details and isinstance(details[0], Mapping):
            raised = details[0]
            exception = f"{raised.get('exc_type', 'Exception')}: {raised.get('exc_value', '')}".rstrip(": ")
        elif str(entry.get("level", "")).lower() in _ERROR_LEVELS:
            last_error = str(entry.get("event", "")).strip() or last_error
    return exception or last_error
