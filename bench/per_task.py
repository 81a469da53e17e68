"""Per task instance: where the time goes, from the components' own timestamps.

KnativeExecutor (every timestamp taken by the component that did the step):
  queued (TI.queued_when, scheduler)            -> dispatched (executor, ``knative_task_done.dispatched_at``)
  -> received (worker, ``worker_timings.received_at``)
  -> task process started (worker's Execution API relay saw ``PATCH /run`` succeed, ``started_at``)
  -> finished (worker, ``finished_at``: the supervisor returned)
  -> scheduler learned of it (``knative_task_reported.reported_at``, in the executor's sync);
  finished -> downstream queued (TI.queued_when of the next task): the task's own ``PATCH /state``
  already lets the scheduler queue downstream tasks, without waiting for the executor's report.
LocalExecutor has no such logs: Airflow's records only (queued -> start_date -> end_date ->
downstream queued), which are also given for the KnativeExecutor so both can be compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_knative.events import read_events
from bench.common import summary

Key = tuple[str, str, str, int, int]

KNATIVE_PHASES = (
    ("queued_to_dispatched", "queued_at", "dispatched_at"),
    ("dispatched_to_received", "dispatched_at", "received_at"),
    ("received_to_started", "received_at", "started_at"),
    ("started_to_finished", "started_at", "finished_at"),
    ("finished_to_reported", "finished_at", "reported_at"),
    ("finished_to_downstream_queued", "finished_at", "downstream_queued_at"),
)
#: Not a step of the chain: the task's own ``PATCH /state`` lets the scheduler queue downstream
#: tasks before the executor's report arrives, so this can be negative.
EXTRA_KNATIVE = (("reported_to_downstream_queued", "reported_at", "downstream_queued_at"),)
AIRFLOW_PHASES = (
    ("queued_to_start", "queued_at", "start_date"),
    ("start_to_end", "start_date", "end_date"),
    ("end_to_downstream_queued", "end_date", "downstream_queued_at"),
)


def _key(record: dict[str, Any]) -> Key:
    map_index = record.get("map_index")
    return (
        str(record["dag_id"]),
        str(record["run_id"]),
        str(record["task_id"]),
        -1 if map_index is None else int(map_index),
        int(record.get("try_number") or 1),
    )


def scheduler_timings(scheduler_log: Path) -> dict[Key, dict[str, float]]:
    """Executor-side timestamps per task instance try, from the scheduler's structured lines."""
    found: dict[Key, dict[str, float]] = defaultdict(dict)
    for done in read_events(scheduler_log, "knative_task_done"):
        worker = done.get("worker_timings") or {}
        found[_key(done)].update(
            dispatched_at=done["dispatched_at"],
            answered_at=done["answered_at"],
            **{k: v for k, v in worker.items() if v is not None},
        )
    for reported in read_events(scheduler_log, "knative_task_reported"):
        found[_key(reported)]["reported_at"] = reported["reported_at"]
    return dict(found)


def _downstream_queued(tis: list[dict[str, Any]], downstream: dict[str, list[str]]) -> None:
    """Give the last-finishing upstream TI of each task the time that task was first queued."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ti in tis:
        by_task[ti["task_id"]].append(ti)
    for task_id, children in downstream.items():
        for child in children:
            queued = [t["queued_at"] for t in by_task.get(child, []) if t.get("queued_at")]
            ups = [t for t in by_task.get(task_id, []) if t.get("end_date")]
            if not queued or not ups:
                continue
            last = max(ups, key=lambda t: t["end_date"])
            previous = last.get("downstream_queued_at")
            last["downstream_queued_at"] = min(queued) if previous is None else min(previous, *queued)


def task_rows(
    run: dict[str, Any], downstream: dict[str, list[str]], timings: dict[Key, dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per task instance of a run, with absolute timestamps and phase durations."""
    rows = [dict(ti) for ti in run["task_instances"]]
    _downstream_queued(rows, downstream)
    for row in rows:
        key = _key({**row, "dag_id": run["dag_id"], "run_id": run["run_id"]})
        row.update(timings.get(key, {}))
        phases = KNATIVE_PHASES + EXTRA_KNATIVE + AIRFLOW_PHASES if "dispatched_at" in row else AIRFLOW_PHASES
        for name, start, end in phases:
            if row.get(start) is not None and row.get(end) is not None:
                row[name] = row[end] - row[start]
    return rows


def phase_summary(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Distribution of every phase over the given task instance rows."""
    rows = list(rows)
    names = [name for name, _, _ in KNATIVE_PHASES + EXTRA_KNATIVE + AIRFLOW_PHASES]
    return {
        name: summary(r[name] for r in rows if name in r) for name in names if any(name in r for r in rows)
    }


def largest_phase(summaries: dict[str, dict[str, Any]], phases: Iterable[tuple[str, str, str]]) -> str | None:
    """The phase with the largest median."""
    medians = {
        name: summaries[name]["median"] for name, _, _ in phases if summaries.get(name, {}).get("median")
    }
    return max(medians, key=lambda n: medians[n]) if medians else None
