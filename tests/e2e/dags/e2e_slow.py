"""A workflow that takes a few seconds, for the gateway's wait time-out and polling."""

from __future__ import annotations

import time

from airflow.sdk import dag, task


@dag(dag_id="e2e_slow", schedule=None, catchup=False)
def e2e_slow() -> None:
    @task
    def nap(params: dict | None = None) -> str:
        time.sleep(float((params or {}).get("data") or 4))
        return "rested"

    nap()


e2e_slow()
