"""Boot test DAG: one task slow enough to kill its worker container while it runs.

``{"input": {"value": 21, "seconds": 30}}`` gives ``{"output": 42}`` after the
sleep. The first try sleeps ``seconds``; a retry (after the test killed the first
try's worker) sleeps 1 s, so the test does not wait twice.
"""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="boot_retry", schedule=None, catchup=False, params={"data": {"value": 1, "seconds": 1}})
def boot_retry() -> None:
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def slow_double(params: dict | None = None) -> int:
        data = (params or {})["data"]
        first_try = get_current_context()["ti"].try_number == 1
        time.sleep(float(data["seconds"]) if first_try else 1.0)
        return int(data["value"]) * 2

    slow_double()


boot_retry()
