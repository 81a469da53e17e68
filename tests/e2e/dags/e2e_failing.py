"""A workflow whose middle task raises: the gateway must name it and the run."""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(dag_id="e2e_failing", schedule=None, catchup=False, default_args={"retries": 0})
def e2e_failing() -> None:
    @task
    def extract(params: dict | None = None) -> list[int]:
        return list((params or {}).get("data") or [])

    @task
    def explode(values: list[int]) -> int:
        raise ValueError(f"refusing to process {values}")

    @task
    def after(value: int) -> int:
        return value

    after(explode(extract()))


e2e_failing()
