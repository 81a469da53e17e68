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
"""

from __future__ import annotations

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
from bench.common import summary
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
    return {
        "rows": rows,
        "overhead": summary(r["overhead_s"] for r in rows),
        "received_to_task_process_started": summary(
            r.get("received_to_task_process_started_s") for r in rows
        ),
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


def measure(stack: LocalStack, api: AirflowClient, runs: int, log_dir: Path) -> dict[str, Any]:
    api.unpause("bench_probe_warm")
    api.unpause("bench_probe_fresh")
    _probe_runs(api, "bench_probe_warm", 1)  # warm-up, not counted
    return {
        "warm": measure_warm(stack, api, runs),
        "fresh": measure_fresh(stack, api, runs, log_dir),
        "import_only": import_only(max(2, runs // 3)),
    }
