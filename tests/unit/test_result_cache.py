"""The executor's bounded cache of return values it may send inline to downstream tasks."""

from __future__ import annotations

import json
from typing import Any

from airflow_knative.executor.result_cache import ResultCache

DAG = "etl"
RUN = "manual__2025-01-01T00:00:00+00:00"


def size(value: Any) -> int:
    """The size the cache charges for a value: its compact JSON."""
    return len(json.dumps(value, separators=(",", ":")))


def cached(cache: ResultCache, task_ids: list[str], run_id: str = RUN) -> list[tuple[str, int, Any]]:
    return [(x.task_id, x.map_index, x.value) for x in cache.inline_for(DAG, run_id, task_ids, 10**9)]


def test_put_then_inline_for_returns_the_value() -> None:
    cache = ResultCache(1000)
    cache.put((DAG, RUN, "extract", -1), {"rows": [1, 2]})

    assert cached(cache, ["extract"]) == [("extract", -1, {"rows": [1, 2]})]
    assert len(cache) == 1
    assert cache.used_bytes == size({"rows": [1, 2]})


def test_byte_budget_is_respected() -> None:
    value = "x" * 98  # 100 bytes as JSON
    cache = ResultCache(max_bytes=350)

    for i in range(10):
        cache.put((DAG, RUN, f"t{i}", -1), value)
        assert cache.used_bytes <= cache.max_bytes

    assert len(cache) == 3
    assert cache.used_bytes == 300


def test_least_recently_used_is_evicted_first() -> None:
    value = "x" * 98  # 100 bytes
    cache = ResultCache(max_bytes=300)
    for name in ("a", "b", "c"):
        cache.put((DAG, RUN, name, -1), value)

    cache.put((DAG, RUN, "d", -1), value)

    assert [x[0] for x in cached(cache, ["a", "b", "c", "d"])] == ["b", "c", "d"]


def test_reading_a_value_makes_it_recently_used() -> None:
    value = "x" * 98
    cache = ResultCache(max_bytes=300)
    for name in ("a", "b", "c"):
        cache.put((DAG, RUN, name, -1), value)

    cache.inline_for(DAG, RUN, ["a"], 10**6)  # "a" was just sent downstream
    cache.put((DAG, RUN, "d", -1), value)

    assert [x[0] for x in cached(cache, ["a", "b", "c", "d"])] == ["a", "c", "d"]


def test_storing_again_replaces_the_value_and_its_size() -> None:
    cache = ResultCache(max_bytes=1000)
    cache.put((DAG, RUN, "a", -1), "x" * 98)

    cache.put((DAG, RUN, "a", -1), [1])

    assert cached(cache, ["a"]) == [("a", -1, [1])]
    assert cache.used_bytes == size([1])


def test_value_larger_than_the_budget_is_not_kept() -> None:
    cache = ResultCache(max_bytes=100)
    cache.put((DAG, RUN, "small", -1), "s")

    cache.put((DAG, RUN, "huge", -1), "x" * 200)

    assert cached(cache, ["small", "huge"]) == [("small", -1, "s")]
    assert cache.used_bytes == size("s")


def test_value_that_no_longer_fits_drops_the_old_one() -> None:
    cache = ResultCache(max_bytes=100)
    cache.put((DAG, RUN, "a", -1), "old")

    cache.put((DAG, RUN, "a", -1), "x" * 200)  # the new value is not kept, the stale one must not stay

    assert cached(cache, ["a"]) == []
    assert cache.used_bytes == 0


def test_inline_for_returns_only_the_requested_upstream_tasks() -> None:
    cache = ResultCache(10_000)
    for name in ("extract", "clean", "unrelated"):
        cache.put((DAG, RUN, name, -1), name.upper())

    assert cached(cache, ["extract", "clean"]) == [("clean", -1, "CLEAN"), ("extract", -1, "EXTRACT")]
    assert cached(cache, []) == []
    assert cached(cache, ["never_ran"]) == []


def test_inline_for_is_scoped_to_the_same_dag_and_run() -> None:
    cache = ResultCache(10_000)
    cache.put((DAG, RUN, "extract", -1), "this run")
    cache.put((DAG, "scheduled__other", "extract", -1), "other run")
    cache.put(("other_dag", RUN, "extract", -1), "other dag")

    assert cached(cache, ["extract"]) == [("extract", -1, "this run")]
    assert cached(cache, ["extract"], run_id="scheduled__other") == [("extract", -1, "other run")]
    assert cache.inline_for(DAG, "never_seen_run", ["extract"], 10**6) == []


def test_inline_for_includes_every_mapped_index() -> None:
    cache = ResultCache(10_000)
    for index in (2, 0, 1):
        cache.put((DAG, RUN, "mapped", index), index * 10)

    assert cached(cache, ["mapped"]) == [("mapped", 0, 0), ("mapped", 1, 10), ("mapped", 2, 20)]


def test_inline_for_respects_the_budget() -> None:
    cache = ResultCache(10_000)
    cache.put((DAG, RUN, "a", -1), "x" * 48)  # 50 bytes
    cache.put((DAG, RUN, "b", -1), "y" * 98)  # 100 bytes
    cache.put((DAG, RUN, "c", -1), "z" * 28)  # 30 bytes

    chosen = cache.inline_for(DAG, RUN, ["a", "b", "c"], budget_bytes=90)

    assert [x.task_id for x in chosen] == ["a", "c"]
    assert sum(size(x.value) for x in chosen) <= 90


def test_inline_for_with_no_budget_sends_nothing() -> None:
    cache = ResultCache(10_000)
    cache.put((DAG, RUN, "a", -1), 1)

    assert cache.inline_for(DAG, RUN, ["a"], budget_bytes=0) == []


def test_inline_for_does_not_consume_the_values() -> None:
    cache = ResultCache(10_000)
    cache.put((DAG, RUN, "a", -1), 1)

    cache.inline_for(DAG, RUN, ["a"], 10**6)

    assert cached(cache, ["a"]) == [("a", -1, 1)]  # a second downstream task gets it too


def test_none_and_nested_values_round_trip() -> None:
    cache = ResultCache(10_000)
    cache.put((DAG, RUN, "none", -1), None)
    cache.put((DAG, RUN, "nested", -1), {"a": [1, {"b": None}], "c": "ü"})

    assert cached(cache, ["none", "nested"]) == [
        ("nested", -1, {"a": [1, {"b": None}], "c": "ü"}),
        ("none", -1, None),
    ]
