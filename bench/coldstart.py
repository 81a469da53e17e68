"""Cold vs warm vs pre-warmed, end to end on the depth family, with services that scale to zero.

Two KnativeExecutor stacks with ``--scale-to-zero`` (every service behind the local
activator, a worker started on its first request, see airflow_knative/local/activator.py):
one with ``[knative_executor] prewarm`` on, one with it off. Per round and DAG:

1. both activators scale every worker to zero (``POST /activator/scale-to-zero``);
2. a *cold* run on each stack (runs alternate between the two);
3. a *warm* run on each stack right after (every worker the DAG needs is up).

So "cold, pre-warm off" pays one cold start per service on the critical path,
"cold, pre-warmed" overlaps them with upstream tasks, and "warm" pays none.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.events import read_events
from airflow_knative.local.activator import SCALE_TO_ZERO_PATH, STATUS_PATH
from airflow_knative.local.stack import LocalStack
from bench.common import bootstrap_ratio, summary
from bench.e2e import RunRecord, _load_expected_result, check_for, run_once

#: stack name -> ``[knative_executor] prewarm``
COLD_SYSTEMS = {"prewarm": True, "no_prewarm": False}


def activator_status(stack: LocalStack) -> dict[str, Any]:
    answer = httpx.get(stack.config.activator_url + STATUS_PATH, timeout=10.0)
    answer.raise_for_status()
    status: dict[str, Any] = answer.json()
    return status


def scale_to_zero(stack: LocalStack, timeout: float = 60.0) -> None:
    """Stop every worker of the stack and wait until none runs."""
    httpx.post(stack.config.activator_url + SCALE_TO_ZERO_PATH, timeout=10.0).raise_for_status()
    deadline = time.monotonic() + timeout
    while activator_status(stack)["running"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stack.config.home}: workers still running after {timeout}s")
        httpx.post(stack.config.activator_url + SCALE_TO_ZERO_PATH, timeout=10.0)
        time.sleep(0.2)
    time.sleep(1.0)  # let the stopped workers' exits settle, so the next cold run starts on a quiet CPU


def measure(
    stacks: dict[str, LocalStack],
    apis: dict[str, AirflowClient],
    dags: list[str],
    rounds: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Run the rounds; return per-DAG summaries, ratios with intervals, cold start costs and records."""
    expected = _load_expected_result()
    rng = random.Random(7)
    records: list[RunRecord] = []
    for dag_id in dags:
        for round_index in range(rounds):
            check = check_for(dag_id, expected, rng)
            for stack in stacks.values():
                scale_to_zero(stack)
            for phase in ("cold", "warm"):
                for name in stacks:
                    record = run_once(apis[name], name, dag_id, phase, check)
                    records.append(record)
                    status = "ok" if record.correct else f"WRONG/FAILED ({record.state}, {record.error})"
                    progress(
                        f"  {phase:5s} {dag_id:20s} #{round_index + 1} {name:10s} "
                        f"client {record.client_s or 0:6.2f}s {status}"
                    )
    return {
        "dags": dags,
        "rounds": rounds,
        "by_dag": {dag_id: _aggregate([r for r in records if r.dag_id == dag_id]) for dag_id in dags},
        "cold_starts": {name: activator_status(stack)["cold_starts"] for name, stack in stacks.items()},
        "prewarm_requests": {
            name: sum(1 for _ in read_events(stack.config.log_dir / "scheduler.log", "knative_prewarm"))
            for name, stack in stacks.items()
        },
        "failed_runs": sum(1 for r in records if not r.correct),
        "runs": [r.as_dict() for r in records],
    }


def _aggregate(records: list[RunRecord]) -> dict[str, Any]:
    def times(name: str, phase: str) -> list[float | None]:
        return [r.client_s for r in records if r.system == name and r.phase == phase and r.correct]

    warm = times("prewarm", "warm") + times("no_prewarm", "warm")
    return {
        "warm": summary(warm),
        "cold": summary(times("no_prewarm", "cold")),
        "prewarmed": summary(times("prewarm", "cold")),
        "cold_over_warm": bootstrap_ratio(times("no_prewarm", "cold"), warm),
        "prewarmed_over_warm": bootstrap_ratio(times("prewarm", "cold"), warm),
        "failed": sum(1 for r in records if not r.correct),
    }
