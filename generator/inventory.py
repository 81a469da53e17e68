"""Which tasks exist, as Airflow's own DAG parsing sees them, and which service serves each.

The generator turns this inventory into chart data; the local stack turns it into
its routing table. Both therefore agree with each other and with the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airflow_knative.naming import service_name
from airflow_knative.task_config import InvalidTaskConfigError, KnativeTaskConfig, parse_task_config


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
        details = "\n".join(f"  {path}:\n    {error.strip()}" for path, error in sorted(bag.import_errors.items()))
        raise InventoryError(f"{len(bag.import_errors)} DAG file(s) failed to import:\n{details}")
    return dict(bag.dags)


def _entries(dags: dict[str, object]) -> Iterable[TaskEntry]:
    for dag_id in sorted(dags):
        dag = dags[dag_id]
        for task in sorted(dag.tasks, key=lambda t: t.task_id):  # type: ignore[attr-defined]
            where = f"{dag_id}.{task.task_id}"
            try:
                config = parse_task_config(task.executor_config, where=where)
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
