"""Worker overhead: request received -> first line of task code, warm worker vs fresh interpreter.

Both sides run the same real workload (``bench_probe_*``: one task returning
``time.time()`` at its first line) through the same scheduler, KnativeExecutor and
Execution API. Only what receives the request differs:

- warm: the product's worker (Airflow imported once, pre-forked supervisor pool);
  ``received_at`` is the worker's own ``worker_timings.received_at``.
- fresh: ``bench/fresh_worker.py``, which starts ``python -m
  airflow.sdk.execution_time.execute_workload`` per task, as a pod-per-task
  executor does (pod start itself not included); ``received_at`` from its log.

Also timed: the bare interpreter start + imports a fresh task process pays.

Where the warm overhead goes: the task process's own log lines (Airflow's task
runner writes them, JSON with timestamps) mark when it started, when it had its
DAG, and when it was done with everything before the task code (``::endgroup::``
of "Pre Execute"); the worker marks the answer to ``PATCH /run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.events import read_events
from airflow_knative.local.config import task_environment
from airflow_knative.local.ports import reserve_ports
from airflow_knative.local.processes import ProcessGroup
from airflow_knative.local.stack import LocalStack
from airflow_knative.protocol import READINESS_PATH
from airflow_knative.routing import ServiceEntry, load_routing_table, write_routing_table
from bench.common import parse_ts, summary
from bench.e2e import Check, RunRecord, run_once
from bench.per_task import scheduler_timings

FRESH_SERVICE = "bench-fresh-interpreter"
IMPORT_ONLY = (
    "import airflow.sdk.execution_time.execute_workload, airflow.executors.base_executor, "
    "airflow.sdk.execution_time.supervisor"
)


def _route_to(stack: LocalStack, dag_id: str, url: str) -> None:
    table = load_routing_table(stack.config.routing_file)
    table.services[FRESH_SERVICE] = ServiceEntry(url=url)
    table.tasks.setdefault(dag_id, {})["probe"] = FRESH_SERVICE
    write_routing_table(table, stack.config.routing_file)
    time.sleep(0.05)  # the executor re-reads the file when its mtime changes


def _probe_runs(api: AirflowClient, dag_id: str, runs: int) -> list[RunRecord]:
    return [run_once(api, "knative", dag_id, "overhead", Check({}, "probe", None)) for _ in range(runs)]


def _overheads(records: list[RunRecord], received: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        received_at = received.get(record.run_id)
        ok = record.correct and isinstance(record.result, float) and received_at is not None
        rows.append(
            {
                "run_id": record.run_id,
                "correct": record.correct,
                "received_at": received_at,
                "task_code_at": record.result,
                "overhead_s": (record.result - received_at) if ok and received_at else None,
                "client_s": record.client_s,
            }
        )
    return rows


#: Phases of the warm overhead, each measured from the worker's ``received_at`` (see :func:`_task_log_marks`).
WARM_PHASES = {
    "task_process_running": "task process running (its first log line)",
    "run_answered": "`PATCH /run` answered (worker)",
    "dag_ready": "task process has its DAG (`Worker startup parse complete`)",
    "pre_execute_done": "task process done with everything before the task code",
    "task_code": "first line of task code",
}


def _task_log_marks(log_dir: Path, dag_id: str, run_id: str) -> dict[str, float]:
    """When the task process logged its first line, its DAG ready, and the end of "Pre Execute"."""
    path = log_dir / "tasks" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=probe" / "attempt=1.log"
    marks: dict[str, float] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return marks
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at, event = parse_ts(entry.get("timestamp")), entry.get("event", "")
        if at is None:
            continue
        marks.setdefault("task_process_running", at)
        if event == "Worker startup parse complete":
            marks.setdefault("dag_ready", at)
        elif event == "::endgroup::":
            marks.setdefault("pre_execute_done", at)
    return marks


def _phases(row: dict[str, Any], log_marks: dict[str, float], run_answered: float | None) -> dict[str, float]:
    received = row["received_at"]
    if received is None:
        return {}
    marks = {**log_marks, "run_answered": run_answered, "task_code": row["task_code_at"]}
    return {name: marks[name] - received for name in WARM_PHASES if isinstance(marks.get(name), float)}


def measure_warm(stack: LocalStack, api: AirflowClient, runs: int) -> dict[str, Any]:
    records = _probe_runs(api, "bench_probe_warm", runs)
    timings = scheduler_timings(stack.config.log_dir / "scheduler.log")
    received = {
        k[1]: v["received_at"]
        for k, v in timings.items()
        if k[0] == "bench_probe_warm" and "received_at" in v
    }
    started = {k[1]: v.get("started_at") for k, v in timings.items() if k[0] == "bench_probe_warm"}
    rows = _overheads(records, received)
    for row in rows:
        start = started.get(row["run_id"])
        if start and row["received_at"]:
            row["received_to_task_process_started_s"] = start - row["received_at"]
        log_marks = _task_log_marks(stack.config.log_dir, "bench_probe_warm", row["run_id"])
        row["phases_s"] = _phases(row, log_marks, start)
    return {
        "rows": rows,
        "overhead": summary(r["overhead_s"] for r in rows),
        "received_to_task_process_started": summary(
            r.get("received_to_task_process_started_s") for r in rows
        ),
        "phases": {name: summary(r["phases_s"].get(name) for r in rows) for name in WARM_PHASES},
        "failed": sum(1 for r in rows if not r["correct"]),
    }


def measure_fresh(stack: LocalStack, api: AirflowClient, runs: int, log_dir: Path) -> dict[str, Any]:
    port = reserve_ports()
    group = ProcessGroup(log_dir)
    env = {**os.environ, **task_environment(stack.config)}
    url = f"http://127.0.0.1:{port}"
    group.start(
        "fresh-worker",
        [sys.executable, "-m", "bench.fresh_worker", "--port", str(port)],
        env,
        url + READINESS_PATH,
    )
    try:
        group.wait_healthy(60)
        _route_to(stack, "bench_probe_fresh", url)
        records = _probe_runs(api, "bench_probe_fresh", runs)
    finally:
        group.stop()
    events = list(read_events(log_dir / "fresh-worker.log", "fresh_task_finished"))
    rows = _overheads(records, {e["run_id"]: e["received_at"] for e in events})
    return {
        "rows": rows,
        "overhead": summary(r["overhead_s"] for r in rows),
        "failed": sum(1 for r in rows if not r["correct"]),
    }


def import_only(runs: int) -> dict[str, Any]:
    """Interpreter start + the imports ``execute_workload`` needs, nothing run."""
    durations = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORT_ONLY], check=True, timeout=120, capture_output=True)
        durations.append(time.perf_counter() - began)
    return {"command": f'{Path(sys.executable).name} -c "{IMPORT_ONLY}"', "seconds": summary(durations)}


def measure(
    stack: LocalStack, api: AirflowClient, runs: int, warm_runs: int, log_dir: Path
) -> dict[str, Any]:
    api.unpause("bench_probe_warm")
    api.unpause("bench_probe_fresh")
    _probe_runs(api, "bench_probe_warm", 1)  # warm-up, not counted
    return {
        "warm": measure_warm(stack, api, warm_runs),
        "fresh": measure_fresh(stack, api, runs, log_dir),
        "import_only": import_only(max(2, runs // 3)),
    }
