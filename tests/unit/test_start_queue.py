"""The local activator's start queue: a bounded number of starts, task starts before pre-warm ones."""

from __future__ import annotations

import asyncio

import pytest

from airflow_knative.local.start_queue import UNKNOWN_DISTANCE, StartQueue


async def _started(queue: StartQueue, order: list[str], key: str, priority: int) -> None:
    await queue.acquire(key, priority)
    order.append(key)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_limit_start_at_once_and_each_release_lets_one_more_in() -> None:
    queue = StartQueue(2)
    order: list[str] = []
    tasks = [asyncio.create_task(_started(queue, order, key, priority=1)) for key in "abcd"]
    await _settle()
    assert order == ["a", "b"] and queue.waiting == ["c", "d"]
    queue.release()
    await _settle()
    assert order == ["a", "b", "c"] and queue.starting == 2
    queue.release()
    queue.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]


async def test_a_start_a_task_waits_for_overtakes_queued_prewarm_starts() -> None:
    queue = StartQueue(1)
    order: list[str] = []
    tasks = [asyncio.create_task(_started(queue, order, key, priority=1)) for key in ("w1", "w2", "w3")]
    await _settle()
    tasks.append(asyncio.create_task(_started(queue, order, "task", priority=0)))
    await _settle()
    assert queue.waiting == ["task", "w2", "w3"]
    for _ in range(3):
        queue.release()
        await _settle()
    assert order == ["w1", "task", "w2", "w3"]
    queue.release()
    await asyncio.gather(*tasks)


async def test_a_task_arriving_for_a_queued_prewarm_start_moves_it_ahead() -> None:
    queue = StartQueue(1)
    order: list[str] = []
    tasks = [asyncio.create_task(_started(queue, order, key, priority=1)) for key in ("w1", "w2", "w3")]
    await _settle()
    queue.promote("w3", 0)
    assert queue.waiting == ["w3", "w2"]
    queue.release()
    await _settle()
    assert order == ["w1", "w3"]
    queue.release()
    queue.release()
    await asyncio.gather(*tasks)


async def test_nearer_prewarms_start_before_farther_ones_whatever_order_they_came_in() -> None:
    queue = StartQueue(1)
    order: list[str] = []
    await queue.acquire("running", 0)
    tasks = [
        asyncio.create_task(_started(queue, order, key, priority))
        for key, priority in (("d3", 3), ("d1", 1), ("unknown", UNKNOWN_DISTANCE), ("d2", 2))
    ]
    await _settle()
    assert queue.waiting == ["d1", "d2", "d3", "unknown"]
    queue.promote("d3", 1)  # a later dispatch: d3's task is now a direct downstream
    queue.promote("d1", 5)  # never pushed back
    assert queue.waiting == ["d3", "d1", "d2", "unknown"]  # equal priority: first come first served
    for _ in range(5):
        queue.release()
        await _settle()
    await asyncio.gather(*tasks)
    assert order == ["d3", "d1", "d2", "unknown"]


async def test_a_cancelled_wait_gives_up_its_place_without_losing_a_slot() -> None:
    queue = StartQueue(1)
    order: list[str] = []
    await queue.acquire("running", 0)
    cancelled = asyncio.create_task(_started(queue, order, "gone", priority=0))
    later = asyncio.create_task(_started(queue, order, "later", priority=1))
    await _settle()
    cancelled.cancel()
    await _settle()
    assert queue.waiting == ["later"]
    queue.release()
    await later
    assert order == ["later"] and queue.starting == 1


async def test_without_a_limit_every_start_begins_at_once() -> None:
    queue = StartQueue(None)
    order: list[str] = []
    await asyncio.gather(*(_started(queue, order, key, priority=1) for key in "abcdefgh"))
    assert order == list("abcdefgh") and queue.starting == 8 and queue.waiting == []


def test_a_limit_below_one_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        StartQueue(0)
