"""Which tasks exist, as Airflow's own DAG parsing sees them, and which service serves each.

The generator (a repo tool) turns this inventory into chart data; the local stack turns it into
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


def parse_folder(dag_folder: Path) -> tuple[dict[str, object], dict[str, str]]:
    """Parse ``dag_folder`` with Airflow's DagBag; return ``(dags, import errors by file)``."""
    from airflow.dag_processing.dagbag import DagBag

    if not dag_folder.is_dir():
        raise InventoryError(f"DAG folder {dag_folder} does not exist")
    bag = DagBag(dag_folder=str(dag_folder))
    return dict(bag.dags), dict(bag.import_errors)


def load_dags(dag_folder: Path) -> dict[str, object]:
    """Parse ``dag_folder`` with Airflow's DagBag; stop on the first file that fails to import."""
    dags, import_errors = parse_folder(dag_folder)
    if import_errors:
        details = "\n".join(
            f"  {path}:\n    {error.strip()}" for path, error in sorted(import_errors.items())
        )
        raise InventoryError(f"{len(import_errors)} DAG file(s) failed to import:\n{details}")
    return dags


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
        yield from dag_entries(dags[dag_id])


def dag_entries(dag: Any) -> list[TaskEntry]:
    """The tasks of one parsed DAG and their services (raises :class:`InventoryError` for bad config)."""
    default_args = getattr(dag, "default_args", None)
    entries = []
    for task in sorted(dag.tasks, key=lambda t: t.task_id):
        where = f"{dag.dag_id}.{task.task_id}"
        try:
            executor_config = merged_executor_config(task.executor_config, default_args)
            config = parse_task_config(executor_config, where=where)
        except InvalidTaskConfigError as exc:
            raise InventoryError(f"{dag.fileloc}: {exc}") from exc
        timeout = task.execution_timeout
        entries.append(
            TaskEntry(
                dag_id=dag.dag_id,
                task_id=task.task_id,
                service=config.service or service_name(dag.dag_id, task.task_id),
                config=config,
                execution_timeout_seconds=int(timeout.total_seconds()) if timeout else None,
                fileloc=str(dag.fileloc),
            )
        )
    return entries


def collect_tasks(dag_folder: Path) -> list[TaskEntry]:
    """Return every task in ``dag_folder``, sorted by (dag_id, task_id).

    Raises :class:`InventoryError` when a file does not import, a task's
    ``executor_config`` is invalid, or two different tasks would get the same
    generated service name.
    """
    entries = list(_entries(load_dags(dag_folder)))
    check_unique_services(entries)
    return entries


def check_unique_services(entries: Iterable[TaskEntry]) -> None:
    """Raise :class:`InventoryError` when two different tasks would get the same generated service."""
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
