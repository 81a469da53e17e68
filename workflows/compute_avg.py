"""Average of a list in one task: the smallest workflow, one service."""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="compute_avg", schedule=None, catchup=False, params={"data": [1, 2, 3, 4]})
def compute_avg() -> None:
    @task
    def average(params: dict | None = None) -> float:
        values = list((params or {})["data"])
        return sum(values) / len(values)

    average()


compute_avg()
