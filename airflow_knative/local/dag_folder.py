"""What the DAG folder holds at start-up: the tasks to route, and the files that do not import.

Unlike ``make generate`` (which must refuse to render a chart from a broken
folder), the local stack starts with whatever imports: a broken file is reported
the way Airflow reports it and the other DAGs run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from airflow_knative.inventory import InventoryError, TaskEntry, dag_entries, parse_folder

#: Stacks started from threads of one process (the benchmarks start two) parse one at a time:
#: Airflow's DagBag imports DAG files into the shared ``sys.modules``.
_PARSING = threading.Lock()


@dataclass
class DagFolderScan:
    """Tasks of the DAGs that parsed, and an error per file that did not."""

    entries: list[TaskEntry] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def dag_ids(self) -> list[str]:
        """DAGs that will be served."""
        return sorted({entry.dag_id for entry in self.entries})


def scan_dag_folder(folder: Path) -> DagFolderScan:
    """Parse ``folder`` as Airflow does; keep going past files that fail to import."""
    # The stack's output is for the user: Airflow's "Filling up the DagBag" info line is not.
    logging.getLogger("airflow.dag_processing.dagbag").setLevel(logging.WARNING)
    with _PARSING:
        dags, import_errors = parse_folder(folder)
    scan = DagFolderScan(errors=dict(import_errors))
    for dag_id in sorted(dags):
        try:
            scan.entries.extend(dag_entries(dags[dag_id]))
        except InventoryError as exc:
            scan.errors[str(getattr(dags[dag_id], "fileloc", dag_id))] = str(exc)
    return scan


def relative_to_folder(filename: str, folder: Path) -> str:
    """A DAG file's name relative to the DAG folder (Airflow reports either form)."""
    path = Path(filename)
    if path.is_absolute() and path.is_relative_to(folder):
        return str(path.relative_to(folder))
    return str(path)
