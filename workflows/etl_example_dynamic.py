"""ETL with dynamic task mapping: one ``transform`` instance per input item.

``{"input": [1, 2, 3, 4]}``: each item is doubled by its own mapped task, and
``load`` sums them: ``{"output": 20}``.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="etl_example_dynamic", schedule=None, catchup=False, params={"data": [1, 2, 3, 4]})
def etl_example_dynamic() -> None:
    @task
    def extract(params: dict | None = None) -> list[float]:
        return list((params or {})["data"])

    @task
    def transform(item: float) -> float:
        return item * 2

    @task
    def load(items: list[float]) -> float:
        return sum(items)

    load(transform.expand(item=extract()))


etl_example_dynamic()
