"""A DAG added after install (tests/cluster): `helm upgrade` with it must run it.

Its task sleeps the given seconds, so the scheduler can be deleted while it runs.
"""

from __future__ import annotations

import time

from airflow.sdk import dag, task


@dag(dag_id="cluster_added", schedule=None, catchup=False, params={"data": {"value": 1, "sleep": 0}})
def cluster_added() -> None:
    @task
    def slow_double(params: dict | None = None) -> int:
        data = (params or {})["data"]
        time.sleep(float(data.get("sleep", 0)))
        return int(data["value"]) * 2

    slow_double()


cluster_added()
