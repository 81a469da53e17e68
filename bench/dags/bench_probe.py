"""Benchmark-only DAGs: one task that returns the wall-clock time at its first line.

``bench_probe_warm`` runs on the warm worker; ``bench_probe_fresh`` is routed by the
benchmark to a stub that starts a fresh interpreter per task (``execute_workload``).
"""

from __future__ import annotations

import time

from airflow.sdk import DAG, task


@task
def probe() -> float:
    return time.time()


for _dag_id in ("bench_probe_warm", "bench_probe_fresh"):
    with DAG(dag_id=_dag_id, schedule=None, catchup=False):
        probe()
