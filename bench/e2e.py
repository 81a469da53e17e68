"""End to end, side by side: the same DAGs on both stacks, runs alternating A B A B after a warm-up.

Each run is measured twice: from the client (trigger request sent -> terminal state
seen by polling every 50 ms) and from Airflow's own records (dag run start_date ->
end_date). Every run's result is read back (XCom of the last task) and checked.
"""

from __future__ import annotations

import importlib.util
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_knative.airflow_rest import AirflowClient
from bench.common import parse_ts
from bench.stacks import ROOT

_FAMILY = re.compile(r"^benchmark_w(\d+)_d(\d+)$")
RUN_TIMEOUT = 180.0


def _load_expected_result() -> Callable[[int, int], int]:
    spec = importlib.util.spec_from_file_location("_bench_dags", ROOT / "workflows" / "benchmark_dags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected: Callable[[int, int], int] = module.expected_result
    return expected


@dataclass
class Check:
    """How to trigger a DAG and how to recognise a correct run."""

    conf: dict[str, Any]
    task_id: str
    expected: Any


def check_for(dag_id: str, expected_result: Callable[[int, int], int], rng: random.Random) -> Check:
    if dag_id == "compute_avg_distributed":
        data = [rng.randint(-1000, 1000) for _ in range(rng.randint(3, 12))]
        return Check({"data": data}, "do_avg", sum(data) / len(data))
    if dag_id.startswith("bench_probe"):
        return Check({}, "probe", None)
    match = _FAMILY.match(dag_id)
    if match is None:
        raise ValueError(f"no result check for {dag_id}")
    width, depth = int(match[1]), int(match[2])
    return Check({}, "end", expected_result(width, depth))


@dataclass
class RunRecord:
    """One DAG run, as the client and as Airflow saw it."""

    system: str
    dag_id: str
    phase: str
    run_id: str = ""
    state: str = "not triggered"
    correct: bool = False
    result: Any = None
    expected: Any = None
    error: str | None = None
    trigger_at: float = 0.0
    done_at: float = 0.0
    client_s: float | None = None
    airflow_s: float | None = None
    airflow_queued_s: float | None = None
    task_instances: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _results_match(result: Any, expected: Any) -> bool:
    if expected is None:
        return result is not None
    if isinstance(expected, float):
        return isinstance(result, int | float) and abs(result - expected) < 1e-9 * max(1.0, abs(expected))
    return bool(result == expected)


def run_once(api: AirflowClient, system: str, dag_id: str, phase: str, check: Check) -> RunRecord:
    """Trigger one run, wait for it, read Airflow's records and the result."""
    record = RunRecord(system=system, dag_id=dag_id, phase=phase, expected=check.expected)
    record.trigger_at = time.time()
    try:
        record.run_id = api.trigger(dag_id, check.conf)
        record.state = api.wait_terminal(dag_id, record.run_id, RUN_TIMEOUT)
        record.done_at = time.time()
        record.client_s = record.done_at - record.trigger_at
        run = api.dag_run(dag_id, record.run_id)
        start, end, queued = (
            parse_ts(run.get("start_date")),
            parse_ts(run.get("end_date")),
            parse_ts(run.get("queued_at")),
        )
        if start is not None and end is not None:
            record.airflow_s = end - start
        if queued is not None and end is not None:
            record.airflow_queued_s = end - queued
        record.task_instances = [_ti_fields(ti) for ti in api.task_instances(dag_id, record.run_id)]
        if record.state == "success":
            record.result = api.xcom(dag_id, record.run_id, check.task_id)
            record.correct = _results_match(record.result, check.expected)
    except Exception as exc:  # a failed run is data, not a crash of the harness
        record.error = f"{type(exc).__name__}: {exc}"
    return record


def _ti_fields(ti: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": ti["task_id"],
        "map_index": ti.get("map_index", -1),
        "try_number": ti.get("try_number"),
        "state": ti.get("state"),
        "queued_at": parse_ts(ti.get("queued_when")),
        "start_date": parse_ts(ti.get("start_date")),
        "end_date": parse_ts(ti.get("end_date")),
    }


@dataclass
class E2ERunner:
    """Alternates systems run by run; keeps every record."""

    apis: dict[str, AirflowClient]
    seed: int = 42
    records: list[RunRecord] = field(default_factory=list)
    progress: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._expected = _load_expected_result()

    def run_dag(self, dag_id: str, runs: int, phase: str = "measure") -> list[RunRecord]:
        """``runs`` rounds of A B: the same input for both systems within a round."""
        done = []
        for round_index in range(runs):
            check = check_for(dag_id, self._expected, self._rng)
            for system, api in self.apis.items():
                record = run_once(api, system, dag_id, phase, check)
                done.append(record)
                self.records.append(record)
                status = "ok" if record.correct else f"WRONG/FAILED ({record.state}, {record.error})"
                self.progress(
                    f"  {phase:7s} {dag_id:26s} #{round_index + 1} {system:8s} "
                    f"client {record.client_s or 0:6.2f}s airflow {record.airflow_s or 0:6.2f}s {status}"
                )
        return done
