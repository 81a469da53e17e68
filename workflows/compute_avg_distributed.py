"""Average of a list, split over four tasks: extract -> (compute_sum, compute_count) -> do_avg.

Input (gateway ``{"input": [...]}``) arrives as ``params["data"]``.
``{"input": [1, 2, 3, 4]}`` gives ``{"output": 2.5}``.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="compute_avg_distributed", schedule=None, catchup=False, params={"data": [1, 2, 3, 4]})
def compute_avg_distributed() -> None:
    @task
    def extract(params: dict | None = None) -> list[float]:
        return list((params or {})["data"])

    @task
    def compute_sum(values: list[float]) -> float:
        return sum(values)

    @task
    def compute_count(values: list[float]) -> int:
        return len(values)

    @task
    def do_avg(total: float, count: int) -> float:
        return total / count

    values = extract()
    do_avg(compute_sum(values), compute_count(values))


compute_avg_distributed()
