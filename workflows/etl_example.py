"""Extract -> transform -> load over a list of order amounts.

``{"input": [1, 2, 3, 4]}`` gives ``{"output": {"orders": 4, "total": 10}}``.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="etl_example", schedule=None, catchup=False, params={"data": [1, 2, 3, 4]})
def etl_example() -> None:
    @task
    def extract(params: dict | None = None) -> list[float]:
        return list((params or {})["data"])

    @task
    def transform(orders: list[float]) -> dict[str, float]:
        return {"orders": len(orders), "total": sum(orders)}

    @task
    def load(summary: dict[str, float]) -> dict[str, float]:
        return summary

    load(transform(extract()))


etl_example()
