"""Writing why a task never ran into its Airflow task log.

When the executor fails a task before any worker ran it (no route, the worker
refused it, no worker took it in time), no task process ever writes the task's
log file. Airflow's ``FileTaskHandler`` reads ``<base_log_folder>/<log_path>``
first and only then asks the worker's log server, which a Knative worker does not
run ("Could not read served logs: Hostname not available for worker"). So the
executor writes the reason into that file itself, in the JSON-lines format task
logs use, and the UI and ``GET .../logs/<try>`` show it. In the chart the
scheduler and the API server mount the same logs volume.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


def task_log_file(base_folder: Path, log_path: str) -> Path | None:
    """Return ``base_folder/log_path`` if it stays inside ``base_folder``, else None."""
    base = Path(os.path.realpath(base_folder))
    target = Path(os.path.realpath(base / log_path))
    if base != target and base not in target.parents:
        return None
    return target


def write_task_log_reason(base_folder: Path, log_path: str, message: str) -> Path | None:
    """Append ``message`` as an error line to the task's log file; return the file (None if not written).

    Never raises: the task's outcome is reported whether or not the line could be written.
    """
    target = task_log_file(base_folder, log_path)
    if target is None:
        log.warning("not writing outside %s: task log path %r", base_folder, log_path)
        return None
    record = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "error",
        "event": message,
        "logger": "airflow_knative.executor",
    }
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        log.warning("could not write the reason into task log %s: %s", target, exc)
        return None
    return target
