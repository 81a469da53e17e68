"""Benchmark DAG families, as in the vHive Airflow-on-Knative evaluation.

``benchmark_w{W}_d{D}``: ``start`` emits ``W`` items, ``D - 2`` mapped stages each
run ``W`` instances (one per item), and ``end`` gathers them: ``W * (D - 2) + 2``
task instances, a chain ``D`` tasks long. Width families use depth 3
(``W + 2`` instances); depth families use width 1.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

WIDTHS_AT_DEPTH_3 = (1, 2, 4, 8, 16, 24, 48)
DEPTHS_AT_WIDTH_1 = (2, 4, 8, 16)


@task
def start(width: int) -> list[int]:
    return list(range(width))


@task
def stage(item: int) -> int:
    return item + 1


@task
def end(items: list[int]) -> int:
    return sum(items)


def benchmark_dag(width: int, depth: int) -> DAG:
    """Build ``benchmark_w{width}_d{depth}``; see :func:`expected_result` for what ``end`` returns."""
    if width < 1 or depth < 2:
        raise ValueError(f"benchmark DAG needs width >= 1 and depth >= 2, got w={width} d={depth}")
    with DAG(dag_id=f"benchmark_w{width}_d{depth}", schedule=None, catchup=False) as dag:
        items = start(width)
        for level in range(depth - 2):
            items = stage.override(task_id=f"stage_{level + 1}").expand(item=items)
        end(items)
    return dag


def expected_result(width: int, depth: int) -> int:
    """What ``end`` returns: every item was incremented once per mapped stage."""
    return sum(range(width)) + width * (depth - 2)


for _width in WIDTHS_AT_DEPTH_3:
    benchmark_dag(_width, 3)
for _depth in DEPTHS_AT_WIDTH_1:
    benchmark_dag(1, _depth)
