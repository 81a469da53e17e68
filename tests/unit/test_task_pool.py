"""The task pool with real forked processes: a killed pool process is replaced, its workload fails at once.

The workloads here are small Python functions instead of Airflow's supervisor (which
the end-to-end and fault tests run), so each rule is checked in milliseconds.
"""

from __future__ import annotations

import asyncio
import multiprocessing.context
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_knative.worker.task_pool import PoolBrokenError, PoolProcessDiedError, TaskPool


def toy_target(request: bytes, server: str, received_at: float) -> dict[str, Any]:
    """``pid``: own pid; ``sleep:S``: sleep; ``child:PATH``: fork a child that writes its pid, sleeps."""
    command, _, arg = request.decode().partition(":")
    if command == "sleep":
        time.sleep(float(arg))
    elif command == "raise":
        raise ValueError("boom in the workload")
    elif command == "child":
        pid = os.fork()
        if pid == 0:  # the "task process"
            Path(arg).write_text(str(os.getpid()))
            time.sleep(60)
            os._exit(0)
        os.waitpid(pid, 0)
    return {"exit_code": 0, "state": "success", "pid": os.getpid(), "server": server}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pool() -> Any:
    tasks = TaskPool(2, target=toy_target, name="unit")
    tasks.start()
    yield tasks
    await tasks.shutdown(timeout=5.0)


async def test_one_task_at_a_time_stays_in_the_process_that_ran_the_last() -> None:
    """Sequential tasks reuse the warm process (its parsed DAG files), not the next idle one."""
    tasks = TaskPool(4, target=toy_target, name="unit")
    tasks.start()
    try:
        served = [(await tasks.run(b"pid", "http://api", 0.0))["pid"] for _ in range(6)]
    finally:
        await tasks.shutdown(timeout=5.0)

    assert len(set(served)) == 1


async def test_runs_workloads_in_its_pool_processes(pool: TaskPool) -> None:
    pids = set(pool.status().pids)

    results = await asyncio.gather(*(pool.run(b"pid", "http://api", 0.0) for _ in range(4)))

    assert {r["pid"] for r in results} <= pids
    assert all(r["server"] == "http://api" for r in results)
    status = pool.status()
    assert (status.alive, status.busy, status.deaths, status.healthy) == (2, 0, 0, True)


async def test_an_error_in_the_workload_is_a_failed_result_not_a_dead_process(pool: TaskPool) -> None:
    result = await pool.run(b"raise", "http://api", 1.0)

    assert result["exit_code"] == 1
    assert "ValueError: boom in the workload" in result["error"]
    assert pool.status().deaths == 0


async def test_pool_process_killed_mid_workload_fails_it_at_once_and_is_replaced(pool: TaskPool) -> None:
    before = set(pool.status().pids)
    running = asyncio.ensure_future(pool.run(b"sleep:30", "http://api", 0.0))
    await wait_until(lambda: pool.status().busy == 1)
    busy_pid = next(p for p in before if p not in {m.process.pid for m in pool._idle})
    os.kill(busy_pid, signal.SIGKILL)

    with pytest.raises(PoolProcessDiedError) as failure:
        await asyncio.wait_for(running, 10)

    assert f"pool process {busy_pid}" in str(failure.value)
    assert "SIGKILL" in str(failure.value)
    status = pool.status()
    assert (status.size, status.alive, status.deaths, status.replacements) == (2, 2, 1, 1)
    assert busy_pid not in status.pids and status.healthy
    # the worker still runs the next workloads, on both processes
    results = await asyncio.gather(*(pool.run(b"pid", "http://api", 0.0) for _ in range(2)))
    assert all(r["exit_code"] == 0 for r in results)


async def test_the_task_process_dies_with_its_pool_process(pool: TaskPool, tmp_path: Path) -> None:
    """An orphaned task must not run on unseen while Airflow retries it elsewhere."""
    pid_file = tmp_path / "task.pid"
    running = asyncio.ensure_future(pool.run(f"child:{pid_file}".encode(), "http://api", 0.0))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
    task_pid = int(pid_file.read_text())
    busy_pid = next(p for p in pool.status().pids if p not in {m.process.pid for m in pool._idle})

    os.kill(busy_pid, signal.SIGKILL)
    with pytest.raises(PoolProcessDiedError):
        await asyncio.wait_for(running, 10)

    await wait_until(lambda: not alive(task_pid))


async def test_idle_pool_process_killed_is_replaced(pool: TaskPool) -> None:
    victim = pool.status().pids[0]

    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: pool.status().deaths == 1 and pool.status().alive == 2)

    assert victim not in pool.status().pids
    results = await asyncio.gather(*(pool.run(b"pid", "http://api", 0.0) for _ in range(2)))
    assert {r["pid"] for r in results} <= set(pool.status().pids)


async def test_a_pool_that_cannot_replace_a_process_is_broken(
    pool: TaskPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The liveness probe reads ``healthy``: Kubernetes restarts a worker that cannot run tasks."""

    def no_fork(self: Any) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", no_fork)
    for pid in pool.status().pids:
        os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: pool.status().alive == 0)

    status = pool.status()
    assert not status.healthy
    assert status.broken is not None and "cannot start a pool process" in status.broken
    with pytest.raises(PoolBrokenError):
        await asyncio.wait_for(pool.run(b"pid", "http://api", 0.0), 5)


async def test_shutdown_waits_for_running_workloads() -> None:
    tasks = TaskPool(1, target=toy_target, name="unit")
    tasks.start()
    running = asyncio.ensure_future(tasks.run(b"sleep:0.5", "http://api", 0.0))
    await wait_until(lambda: tasks.status().busy == 1)

    await tasks.shutdown(timeout=10.0)

    assert running.done() and running.result()["exit_code"] == 0
    assert tasks.status().alive == 0
    assert tasks.status().deaths == 0  # a stopped pool process is not a death
