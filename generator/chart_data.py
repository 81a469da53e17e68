"""Task inventory -> the per-service data the Helm chart renders workers from.

The chart reads this data from ``chart/files/services.yaml``; users never edit that
file, they override a service in values (``workers.overrides.<service>``). Keys are
the chart's camelCase names so a value can be copied from one place to the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow_knative.inventory import InventoryError, TaskEntry
from airflow_knative.naming import service_name, validate_service_name

#: ``KnativeTaskConfig`` field -> key in the chart data and in ``workers.overrides``.
SETTING_KEYS = {
    "min_scale": "minScale",
    "max_scale": "maxScale",
    "target": "target",
    "container_concurrency": "containerConcurrency",
    "timeout_seconds": "timeoutSeconds",
    "resources": "resources",
}


#: Seconds Knative's request timeout leaves above a task's execution_timeout: the
#: supervisor's start, the task's own stop on timeout and its report to Airflow.
TIMEOUT_MARGIN_SECONDS = 60


def timeout_warnings(
    entries: Iterable[TaskEntry], data: dict[str, Any], max_timeout: int, where: str
) -> list[str]:
    """Say which tasks' time limits do not fit their service's Knative request timeout.

    ``max_timeout`` is the cluster's ``max-revision-timeout-seconds`` as ``where``
    (a values file's ``workers.maxTimeoutSeconds``) states it; the chart refuses to
    render a service above it, and Knative would refuse the revision.
    """
    problems: list[str] = []
    services = data["services"]
    for entry in entries:
        timeout = services.get(entry.service, {}).get("timeoutSeconds")
        task = f"{entry.dag_id}.{entry.task_id} ({entry.fileloc})"
        if timeout is not None and timeout > max_timeout:
            problems.append(
                f"{task}: its service {entry.service!r} needs timeoutSeconds {timeout}, above "
                f"max-revision-timeout-seconds {max_timeout} ({where}): the chart refuses to render it. "
                "Raise max-revision-timeout-seconds in Knative's config-defaults and "
                "workers.maxTimeoutSeconds, "
                "or shorten the task's execution_timeout"
            )
        budget = entry.execution_timeout_seconds
        if timeout is not None and budget and timeout < budget + TIMEOUT_MARGIN_SECONDS:
            problems.append(
                f"{task}: execution_timeout {budget}s but its service {entry.service!r} sets timeoutSeconds "
                f"{timeout}: Knative cuts the request before Airflow's own timeout can end the task; set "
                f"timeout_seconds to at least {budget + TIMEOUT_MARGIN_SECONDS} or leave it to the generator"
            )
    return sorted(set(problems))


def _task_settings(entry: TaskEntry) -> dict[str, Any]:
    """Return the chart settings one task asks for, leaving out what it did not set."""
    config = entry.config.model_dump(mode="json", exclude_none=True)
    settings = {chart_key: config[field] for field, chart_key in SETTING_KEYS.items() if field in config}
    return settings


def _merge_settings(service: str, owners: list[TaskEntry]) -> dict[str, Any]:
    """Combine the settings of the tasks that share ``service``.

    Tasks sharing a service must agree: a service has one min-scale, so two tasks
    asking for different ones is a mistake in the DAG code, not something to guess.
    """
    merged: dict[str, Any] = {}
    source: dict[str, TaskEntry] = {}
    for entry in owners:
        for key, value in _task_settings(entry).items():
            if key in merged and merged[key] != value:
                first = source[key]
                raise InventoryError(
                    f"tasks {first.dag_id}.{first.task_id} ({first.fileloc}) and "
                    f"{entry.dag_id}.{entry.task_id} ({entry.fileloc}) share service {service!r} "
                    f"but set different {key} ({merged[key]!r} vs {value!r}) in "
                    'executor_config["knative"]: make them equal or give one task its own service'
                )
            merged[key] = value
            source.setdefault(key, entry)
    if "timeoutSeconds" not in merged:
        # A request must outlive the longest task it may carry: the executor keeps
        # the HTTP stream open for the whole task, and after execution_timeout fires
        # the task still has to stop and report its failure to Airflow.
        timeouts = [e.execution_timeout_seconds for e in owners if e.execution_timeout_seconds]
        if timeouts:
            merged["timeoutSeconds"] = max(timeouts) + TIMEOUT_MARGIN_SECONDS
    _check_scale_bounds(service, merged, owners)
    return merged


def _check_scale_bounds(service: str, settings: dict[str, Any], owners: list[TaskEntry]) -> None:
    """Reject ``min_scale > max_scale``, which Knative's webhook would refuse at install time."""
    low, high = settings.get("minScale"), settings.get("maxScale")
    if low is not None and high is not None and high != 0 and low > high:
        tasks = ", ".join(f"{e.dag_id}.{e.task_id}" for e in owners)
        raise InventoryError(
            f"service {service!r} ({tasks}): min_scale {low} is above max_scale {high} "
            'in executor_config["knative"]: lower min_scale or raise max_scale'
        )


def _task_ref(entry: TaskEntry) -> dict[str, Any]:
    """One task of a service; ``namedService`` marks a service chosen in ``executor_config``.

    The routing ConfigMap lists only the ids of tasks served by the naming rule: the
    executor derives their service itself, and routes the others by their own config.
    """
    ref: dict[str, Any] = {"dagId": entry.dag_id, "taskId": entry.task_id}
    if entry.service != service_name(entry.dag_id, entry.task_id):
        ref["namedService"] = True
    return ref


def build_chart_data(entries: Iterable[TaskEntry]) -> dict[str, Any]:
    """Return ``{"services": {name: {"tasks": [...], <settings>}}}``, sorted for stable output."""
    by_service: dict[str, list[TaskEntry]] = {}
    for entry in entries:
        validate_service_name(entry.service, source=f"{entry.fileloc}: {entry.dag_id}.{entry.task_id}")
        by_service.setdefault(entry.service, []).append(entry)
    services: dict[str, Any] = {}
    for name in sorted(by_service):
        owners = sorted(by_service[name], key=lambda e: (e.dag_id, e.task_id))
        services[name] = {
            "tasks": [_task_ref(e) for e in owners],
            **_merge_settings(name, owners),
        }
    return {"services": services}
