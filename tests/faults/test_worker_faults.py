"""What users see when a cluster hurts the worker side: real stack, real processes, real kills.

* a pool process SIGKILLed mid-task (what the OOM killer does): the task is retried and
  succeeds, the same worker runs the next task, and its liveness probe showed the breakage;
* a whole worker SIGKILLed mid-task: the task is retried on another worker within Airflow's
  task heartbeat timeout;
* a stream cut while its task runs: the worker's slot stays held until the task ends;
* a DAG with a deadline callback: the callback ran on a worker and the scheduler stayed up;
* a pool process SIGKILLed while the task's rendered-fields write (sent in the background,
  see worker/write_behind.py) is still unanswered: retried, succeeds, nothing runs twice.

Each scenario records its recovery time in .run/faults/recovery.jsonl (and prints it).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from airflow_knative.local.processes import wait_until
from airflow_knative.protocol import SECRET_HEADER, WORKLOAD_PATH
from tests.faults.worker_faults import (  # noqa: F401  # fixtures
    HEARTBEAT_TIMEOUT,
    ExecutionApiProxy,
    FaultStack,
    a_task_workload_body,
    api_proxy,
    fault_stack,
    marks,
    proxy,
    record_figure,
    spawn_worker,
    tries_that_ended,
    wait_for_mark,
)
from tests.metrics_readers import EXECUTOR_PREFIX, sample_value, scrape

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

#: How long the task of a pool-process kill scenario sleeps: long enough to be killed mid-task.
NAP_SECONDS = 6


def test_pool_process_killed_mid_task_is_retried_and_the_worker_heals(
    fault_stack: FaultStack,  # noqa: F811
    spawn_worker: Any,  # noqa: F811
) -> None:
    worker = spawn_worker("pool-kill-worker", concurrency=1)
    fault_stack.route("fault_pool_kill", "nap", worker.url)
    pids_before = worker.pool_pids()

    run_id, marker = fault_stack.trigger("fault_pool_kill", sleep=NAP_SECONDS)
    first = wait_for_mark(marker, "start")  # usually try 1 (a slow API server may fail one first)
    assert first["ppid"] in pids_before  # the task's supervisor is this worker's pool process
    os.kill(first["ppid"], signal.SIGKILL)
    killed_at = time.time()

    health = wait_until(lambda: (h := worker.health().json())["pool"]["deaths"] == 1 and h, timeout=10)
    assert health["status"] == "ok" and health["pool"]["alive"] == 1  # replaced, and the probe says so
    assert first["ppid"] not in health["pool"]["pids"]
    retry = wait_for_mark(marker, "start", try_number=first["try_number"] + 1)
    state = fault_stack.api.wait_terminal("fault_pool_kill", run_id, timeout=120)
    recovered_at = time.time()

    assert state == "success"
    assert retry["ppid"] in health["pool"]["pids"]  # the retry ran on the replacement
    assert tries_that_ended(marker, first, NAP_SECONDS) == [retry["try_number"]]  # the killed one did not
    record_figure("pool_process_kill_to_retry_start", retry["t"] - killed_at)
    record_figure("pool_process_kill_to_run_success", recovered_at - killed_at)

    # the healed worker runs the next task
    next_run, _ = fault_stack.trigger("fault_pool_kill", sleep=0)
    assert fault_stack.api.wait_terminal("fault_pool_kill", next_run, timeout=120) == "success"
    # and its /metrics tell the story: one pool process replaced, one task ended without a state
    samples = scrape(worker.url)
    assert sample_value(samples, "airflow_knative_worker_pool_processes_replaced_total") == 1
    assert sample_value(samples, "airflow_knative_worker_pool_processes_alive") == 1
    assert sample_value(samples, "airflow_knative_worker_tasks_finished_total", state="error") == 1


def test_worker_killed_mid_task_is_retried_on_another_worker(
    fault_stack: FaultStack,  # noqa: F811
    spawn_worker: Any,  # noqa: F811
    proxy: Any,  # noqa: F811
) -> None:
    doomed = spawn_worker("doomed-worker")
    survivor = spawn_worker("surviving-worker")
    service = proxy(doomed.url, survivor.url)  # Knative routes to whichever pod is alive
    fault_stack.route("fault_worker_kill", "nap", service.url)

    run_id, marker = fault_stack.trigger("fault_worker_kill", sleep=4)
    first = wait_for_mark(marker, "start")
    assert first["ppid"] in doomed.pool_pids()
    doomed.kill_container()
    killed_at = time.time()

    retry = wait_for_mark(marker, "start", try_number=first["try_number"] + 1, timeout=HEARTBEAT_TIMEOUT + 90)
    state = fault_stack.api.wait_terminal("fault_worker_kill", run_id, timeout=120)
    recovered_at = time.time()

    assert state == "success"
    assert retry["ppid"] in survivor.pool_pids()
    assert [m["try_number"] for m in marks(marker) if m["event"] == "end"] == [retry["try_number"]]
    record_figure("worker_kill_to_retry_start", retry["t"] - killed_at, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    record_figure("worker_kill_to_run_success", recovered_at - killed_at)


def test_a_cut_stream_keeps_the_slot_until_the_task_ends(
    fault_stack: FaultStack,  # noqa: F811
    spawn_worker: Any,  # noqa: F811
    proxy: Any,  # noqa: F811
) -> None:
    worker = spawn_worker("slot-worker", concurrency=1)
    service = proxy(worker.url)
    fault_stack.route("fault_dropped_stream", "nap", service.url)
    secret = fault_stack.config.secrets_dir.joinpath("worker_secret").read_text().strip()
    lost = EXECUTOR_PREFIX + "streams_lost"
    lost_before = fault_stack.statsd.total(lost)

    run_id, marker = fault_stack.trigger("fault_dropped_stream", sleep=5)
    wait_for_mark(marker, "start")
    assert service.cut_all() >= 1
    cut_at = time.time()

    refusals = 0
    while not [m for m in marks(marker) if m["event"] == "end"]:
        answer = httpx.post(
            f"{worker.url}{WORKLOAD_PATH}",
            content=a_task_workload_body(),
            headers={SECRET_HEADER: secret, "Content-Type": "application/json"},
            timeout=10,
        )
        if [m for m in marks(marker) if m["event"] == "end"]:
            break  # the task ended while we asked: this answer proves nothing either way
        assert answer.status_code == 429, answer.text  # the slot is still the running task's
        refusals += 1
        time.sleep(0.2)
    ended = next(m for m in marks(marker) if m["event"] == "end")
    wait_until(lambda: worker.readiness()["in_flight"] == 0, timeout=10, interval=0.02)
    released_at = time.time()

    assert refusals >= 3
    assert fault_stack.api.wait_terminal("fault_dropped_stream", run_id, timeout=120) == "success"
    # the executor counted the cut stream (UDP: the sample may arrive a moment later)
    wait_until(lambda: fault_stack.statsd.total(lost) == lost_before + 1, 30, "the metric to arrive")
    assert (
        sample_value(scrape(worker.url), "airflow_knative_worker_tasks_refused_total", reason="at_capacity")
        >= refusals
    )
    assert [m["event"] for m in marks(marker)] == ["start", "end"]  # ran once, to its end
    record_figure("stream_cut_slot_held_for", released_at - cut_at)
    record_figure("task_end_to_slot_release", released_at - ended["t"])


def test_deadline_callback_runs_on_a_worker_and_the_scheduler_stays_up(
    fault_stack: FaultStack,  # noqa: F811
) -> None:
    started = time.time()
    run_id = fault_stack.api.trigger("fault_deadline", {})

    callback = wait_until(
        lambda: next((m for m in marks(fault_stack.deadline_marker) if m["t"] >= started), None),
        timeout=120,
        interval=0.1,
    )
    state = fault_stack.api.wait_terminal("fault_deadline", run_id, timeout=120)

    assert state == "success"
    assert fault_stack.scheduler_alive()
    log = (fault_stack.config.log_dir / "scheduler.log").read_text(errors="replace")
    assert "NotImplementedError" not in log
    worker_log = (fault_stack.config.log_dir / "worker-0.log").read_text(errors="replace")
    assert "ExecuteCallback" in worker_log  # it ran on a worker, through the HTTP path
    record_figure("deadline_callback_after_trigger", callback["t"] - started)


def test_pool_process_killed_while_its_rendered_fields_write_is_in_flight(
    fault_stack: FaultStack,  # noqa: F811
    spawn_worker: Any,  # noqa: F811
    api_proxy: ExecutionApiProxy,  # noqa: F811
) -> None:
    """The worker answers a task's first rendered-fields write at once and sends it from a thread.

    Killing the pool process while that write is still unanswered must end like any
    other kill: the try fails, Airflow retries it, the run succeeds, nothing runs twice.
    """
    worker = spawn_worker("rtif-kill-worker", execution_api_url=api_proxy.execution_api_url)
    fault_stack.route("fault_rtif_in_flight", "nap", worker.url)

    run_id, marker = fault_stack.trigger("fault_rtif_in_flight", sleep=NAP_SECONDS)
    first = wait_for_mark(marker, "start")
    assert len(api_proxy.held) == 1, "the task code started, but its rendered-fields write was not held"
    os.kill(first["ppid"], signal.SIGKILL)
    killed_at = time.time()
    api_proxy.release()  # the API server answers again, also the dead try's write

    retry = wait_for_mark(marker, "start", try_number=first["try_number"] + 1)
    state = fault_stack.api.wait_terminal("fault_rtif_in_flight", run_id, timeout=120)
    recovered_at = time.time()

    assert state == "success"
    health = worker.health().json()
    assert health["pool"]["deaths"] == 1 and health["pool"]["alive"] == 1
    assert retry["ppid"] in health["pool"]["pids"]  # the retry ran on the replacement
    assert tries_that_ended(marker, first, NAP_SECONDS) == [retry["try_number"]]  # the killed one did not
    record_figure("rtif_in_flight_pool_kill_to_run_success", recovered_at - killed_at)
