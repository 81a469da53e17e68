"""Which tasks exist, as Airflow's own DAG parsing sees them, and which service serves each.

The generator turns this inventory into chart data; the local stack turns it into
its routing table. Both therefore agree with each other and with the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_knative.naming import service_name
from airflow_knative.task_config import (
    EXECUTOR_CONFIG_KEY,
    InvalidTaskConfigError,
    KnativeTaskConfig,
    parse_task_config,
)


class InventoryError(ValueError):
    """The DAG files cannot be turned into services; the message names the file or task."""


@dataclass(frozen=True)
class TaskEntry:
    """One task of one DAG and the service that runs it."""

    dag_id: str
    task_id: str
    service: str
    config: KnativeTaskConfig
    execution_timeout_seconds: int | None
    fileloc: str


def load_dags(dag_folder: Path) -> dict[str, object]:
    """Parse ``dag_folder`` with Airflow's DagBag; stop on the first file that fails to import."""
    from airflow.dag_processing.dagbag import DagBag

    if not dag_folder.is_dir():
        raise InventoryError(f"DAG folder {dag_folder} does not exist")
    bag = DagBag(dag_folder=str(dag_folder))
    if bag.import_errors:
        details = "\n".join(
            f"  {path}:\n    {error.strip()}" for path, error in sorted(bag.import_errors.items())
        )
        raise InventoryError(f"{len(bag.import_errors)} DAG file(s) failed to import:\n{details}")
    return dict(bag.dags)


def merged_executor_config(task_config: Any, default_args: Any) -> Any:
    """Return the task's ``executor_config`` with the DAG's ``default_args`` Knative keys beneath it.

    Airflow replaces ``default_args["executor_config"]`` as a whole when a task sets
    its own, so a DAG-wide ``min_scale`` would silently vanish from a task that only
    sets ``max_scale``. Merging the ``knative`` keys (the task's win) keeps both.
    """
    defaults = ((default_args or {}).get("executor_config") or {}).get(EXECUTOR_CONFIG_KEY)
    if not isinstance(task_config, dict) or not isinstance(defaults, dict):
        return task_config
    own = task_config.get(EXECUTOR_CONFIG_KEY)
    if own is not None and not isinstance(own, dict):
        return task_config  # parse_task_config reports the wrong type
    return {**task_config, EXECUTOR_CONFIG_KEY: {**defaults, **(own or {})}}


def _entries(dags: dict[str, object]) -> Iterable[TaskEntry]:
    for dag_id in sorted(dags):
        dag = dags[dag_id]
        default_args = getattr(dag, "default_args", None)
        for task in sorted(dag.tasks, key=lambda t: t.task_id):  # type: ignore[attr-defined]
            where = f"{dag_id}.{task.task_id}"
            try:
                executor_config = merged_executor_config(task.executor_config, default_args)
                config = parse_task_config(executor_config, where=where)
            except InvalidTaskConfigError as exc:
                raise InventoryError(f"{dag.fileloc}: {exc}") from exc  # type: ignore[attr-defined]
            timeout = task.execution_timeout
            yield TaskEntry(
                dag_id=dag_id,
                task_id=task.task_id,
                service=config.service or service_name(dag_id, task.task_id),
                config=config,
                execution_timeout_seconds=int(timeout.total_seconds()) if timeout else None,
                fileloc=str(dag.fileloc),  # type: ignore[attr-defined]
            )


def collect_tasks(dag_folder: Path) -> list[TaskEntry]:
    """Return every task in ``dag_folder``, sorted by (dag_id, task_id).

    Raises :class:`InventoryError` when a file does not import, a task's
    ``executor_config`` is invalid, or two different tasks would get the same
    generated service name.
    """
    entries = list(_entries(load_dags(dag_folder)))
    owners: dict[str, TaskEntry] = {}
    for entry in entries:
        if entry.config.service:
            continue  # explicitly shared services are meant to serve several tasks
        clash = owners.setdefault(entry.service, entry)
        if clash is not entry:
            raise InventoryError(
                f"tasks {clash.dag_id}.{clash.task_id} and {entry.dag_id}.{entry.task_id} both map to "
                f"service {entry.service!r}: rename one of them"
            )
    return entries
