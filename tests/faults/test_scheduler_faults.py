"""Scheduler faults: a scheduler stopped or killed mid-task, two schedulers at once, routing broken live.

What a user cares about, asserted from the tasks' own ledger and Airflow's records:
the task ran exactly once (one start, one end, try 1) and the run succeeded.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.faults.conftest import FaultStack, poll, read_ledger, runs_per_task
from tests.metrics_readers import EXECUTOR_PREFIX

pytestmark = pytest.mark.faults

ADOPTED = "adopted running task"


def start_held_run(stack: FaultStack) -> tuple[str, Any, Any]:
    """Trigger ``fault_held`` and wait until its task is running on a worker."""
    ledger, release = stack.new_ledger()
    run_id = stack.trigger("fault_held", ledger=str(ledger), release=str(release))
    poll(lambda: read_ledger(ledger), 300, "the held task to start")
    return run_id, ledger, release


def assert_ran_once(stack: FaultStack, dag_id: str, run_id: str, ledger: Any, tasks: int = 1) -> None:
    """Each task's code started once and ended once, in the try Airflow recorded as its last."""
    lines = read_ledger(ledger)
    counts = runs_per_task(lines)
    assert len(counts) == tasks, counts
    assert all(c == {"start": 1, "end": 1} for c in counts.values()), counts
    ran_in = {(line["task_id"], line["map_index"]): line["try_number"] for line in lines}
    final = {(t["task_id"], t["map_index"]): t["try_number"] for t in stack.task_instances(dag_id, run_id)}
    assert all(final[key] == ran_in[key] for key in counts), (final, ran_in)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_scheduler_stopped_mid_task_the_next_scheduler_adopts_it_and_it_runs_once(
    fault_stack: FaultStack, recovery_figures: list[dict[str, Any]], sig: signal.Signals
) -> None:
    run_id, ledger, release = start_held_run(fault_stack)
    assert fault_stack.statsd is not None
    adopted_before = fault_stack.statsd.total(EXECUTOR_PREFIX + "tasks_adopted")

    fault_at = fault_stack.signal_scheduler(sig)
    new_scheduler = fault_stack.start_scheduler()
    adopted_at = fault_stack.wait_for_log(new_scheduler, ADOPTED, timeout=180)
    # The new scheduler's executor counted the adoption (knative_executor.tasks_adopted).
    poll(
        lambda: fault_stack.statsd.total(EXECUTOR_PREFIX + "tasks_adopted") == adopted_before + 1,
        30,
        "the adoption to be counted",
    )
    release.touch()
    released_at = time.time()

    assert fault_stack.wait_run("fault_held", run_id) == "success"
    done_at = time.time()
    assert_ran_once(fault_stack, "fault_held", run_id, ledger)
    recovery_figures.append(
        {
            "scenario": f"scheduler {sig.name} mid-task, new scheduler started at once",
            "fault_to_adopted_s": round(adopted_at - fault_at, 1),
            "release_to_run_success_s": round(done_at - released_at, 1),
        }
    )


def test_routing_file_broken_at_runtime_running_and_new_tasks_are_unaffected(
    fault_stack: FaultStack, recovery_figures: list[dict[str, Any]]
) -> None:
    routing = fault_stack.config.routing_file
    good = routing.read_text()
    held_run, held_ledger, release = start_held_run(fault_stack)
    try:
        routing.write_text("services: [this is not a routing table")
        broken_at = time.time()
        os.utime(routing, (broken_at + 1, broken_at + 1))  # a coarse clock must not hide the change

        ledger, _ = fault_stack.new_ledger()
        run_id = fault_stack.trigger("fault_fanout", ledger=str(ledger), width=3, seconds=0.1)
        assert fault_stack.wait_run("fault_fanout", run_id) == "success"
        new_run_done_at = time.time()
        assert_ran_once(fault_stack, "fault_fanout", run_id, ledger, tasks=3)  # the 3 mapped tasks

        release.touch()
        assert fault_stack.wait_run("fault_held", held_run) == "success"
        assert_ran_once(fault_stack, "fault_held", held_run, held_ledger)
        scheduler_log = fault_stack.scheduler.log_path.read_text(errors="replace")
        assert "still routing with the last good table" in scheduler_log
        assert str(routing) in scheduler_log
    finally:
        routing.write_text(good)
    recovery_figures.append(
        {
            "scenario": "routing file broken at runtime (no recovery needed: last good table kept)",
            "broken_to_new_run_success_s": round(new_run_done_at - broken_at, 1),
        }
    )


def test_two_schedulers_at_once_run_twenty_tasks_each_once(
    two_scheduler_stack: FaultStack, recovery_figures: list[dict[str, Any]]
) -> None:
    stack = two_scheduler_stack
    assert len([c for c in stack.schedulers if c.process.poll() is None]) == 2
    ledger, _ = stack.new_ledger()
    started = time.time()

    run_id = stack.trigger("fault_fanout", ledger=str(ledger), width=20, seconds=2.0)

    assert stack.wait_run("fault_fanout", run_id, timeout=420) == "success"
    assert_ran_once(stack, "fault_fanout", run_id, ledger, tasks=20)  # the 20 mapped tasks
    reported_by = {
        c.name: c.log_path.read_text(errors="replace").count('"knative_task_reported"')
        for c in stack.schedulers
    }
    recovery_figures.append(
        {
            "scenario": "two schedulers on PostgreSQL, 20 mapped tasks",
            "run_s": round(time.time() - started, 1),
            "outcomes_reported_per_scheduler": reported_by,
        }
    )
