"""Boot test DAG added by the helm-upgrade step: it must get its worker and run.

``{"input": [1, 2, 3]}`` gives ``{"output": 6}``.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="boot_added", schedule=None, catchup=False, params={"data": [1]})
def boot_added() -> None:
    @task
    def total(params: dict | None = None) -> int:
        return sum((params or {})["data"])

    total()


boot_added()
