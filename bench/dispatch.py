"""Executor dispatch: N workloads through the real :class:`Dispatcher` to a stub worker on loopback.

A "scheduler" loop in this process does what Airflow's scheduler does with the
executor: keeps at most ``parallelism`` tasks in flight, hands workloads over with
``submit`` and collects outcomes. Measured: tasks per second end to end, the
longest single ``submit`` call (the scheduler must never wait on HTTP), and the
process's resident memory (sampled every 10 ms) as the count grows.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from airflow_knative.executor.dispatcher import Dispatcher, DispatchOutcome
from airflow_knative.local.ports import reserve_ports
from airflow_knative.local.processes import ProcessGroup
from airflow_knative.protocol import READINESS_PATH
from airflow_knative.routing import Router, RoutingTable, ServiceEntry, write_routing_table
from airflow_knative.settings import ExecutorSettings
from bench.common import summary
from bench.workloads import build_workload

DAG_ID = "bench_dispatch"
SERVICE = "bench-stub"


def _workloads(count: int, width: int) -> list[Any]:
    version = uuid.uuid4()
    return [
        build_workload(
            "task",
            dag_id=DAG_ID,
            run_id=f"manual__bench_{i // width}",
            map_index=i % width,
            dag_version_id=version,
        )
        for i in range(count)
    ]


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _drive(
    dispatcher: Dispatcher,
    outcomes: queue.SimpleQueue[DispatchOutcome],
    items: list[Any],
    parallelism: int,
    sampler: _RssSampler,
) -> dict[str, Any]:
    """The scheduler side: bounded in-flight, never blocking on HTTP."""
    submit_times: list[float] = []
    checkpoints: list[dict[str, float]] = []
    in_flight = done = failed = 0
    next_item = 0
    began = time.perf_counter()
    deadline = time.monotonic() + 600
    while done < len(items) and time.monotonic() < deadline:
        while in_flight < parallelism and next_item < len(items):
            t0 = time.perf_counter()
            dispatcher.submit(items[next_item])
            submit_times.append(time.perf_counter() - t0)
            items[next_item] = None  # the scheduler does not keep workloads it handed over
            next_item += 1
            in_flight += 1
        try:
            outcome = outcomes.get(timeout=0.001)
        except queue.Empty:
            continue
        in_flight -= 1
        done += 1
        failed += outcome.state != "success"
        if done % 1000 == 0:
            checkpoints.append(
                {
                    "done": done,
                    "elapsed_s": time.perf_counter() - began,
                    "rss_mib": sampler.process.memory_info().rss / 2**20,
                }
            )
    elapsed = time.perf_counter() - began
    return {
        "completed": done,
        "failed": failed,
        "elapsed_s": elapsed,
        "tasks_per_s": done / elapsed if elapsed else None,
        "submit_call_s": summary(submit_times),
        "checkpoints": checkpoints,
    }


class _CpuMeter:
    """CPU seconds of this process (dispatcher + driver) and of the stub, as shares of the wall time.

    Tells which side limits the rate: a share near 1.0 is one core kept busy (the
    dispatcher's event loop holds the GIL; the stub is one uvicorn process).
    """

    def __init__(self, stub_pid: int) -> None:
        self.client, self.stub = psutil.Process(), psutil.Process(stub_pid)
        self.start = (self._seconds(self.client), self._seconds(self.stub))

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def shares(self, elapsed: float) -> dict[str, float]:
        client = self._seconds(self.client) - self.start[0]
        stub = self._seconds(self.stub) - self.start[1]
        return {
            "client_s": client,
            "stub_s": stub,
            "client_share": client / elapsed,
            "stub_share": stub / elapsed,
        }


def _log_to_file(log_dir: Path) -> None:
    """Send the executor's per-task lines to a file, as in the scheduler (not to the terminal)."""
    import logging

    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("airflow_knative.executor")
    logger.handlers[:] = [logging.FileHandler(log_dir / "dispatcher.log")]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def measure(count: int, parallelism: int, log_dir: Path) -> dict[str, Any]:
    _log_to_file(log_dir)
    port = reserve_ports()
    url = f"http://127.0.0.1:{port}"
    group = ProcessGroup(log_dir)
    stub = group.start(
        "stub-worker",
        [sys.executable, "-m", "bench.stub_worker", "--port", str(port)],
        dict(os.environ),
        url + READINESS_PATH,
    )
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        routing = Path(tmp) / "routing.yaml"
        write_routing_table(
            RoutingTable(services={SERVICE: ServiceEntry(url=url)}, tasks={DAG_ID: {"task": SERVICE}}),
            routing,
        )
        secret = "bench-secret-" + "x" * 16
        outcomes: queue.SimpleQueue[DispatchOutcome] = queue.SimpleQueue()
        settings = ExecutorSettings(routing_file=str(routing), secret_file="")
        dispatcher = Dispatcher(
            settings,
            secret,
            Router(routing),
            max_connections=parallelism,
            on_outcome=outcomes.put,
            upstream_loader=lambda _version: {},
        )
        try:
            group.wait_healthy(60)
            items = _workloads(count, width=50)
            sampler = _RssSampler()
            rss_before = sampler.process.memory_info().rss
            sampler.start()
            dispatcher.start()
            cpu = _CpuMeter(stub.process.pid)
            result = _drive(dispatcher, outcomes, items, parallelism, sampler)
            result["cpu"] = cpu.shares(result["elapsed_s"])
            sampler.done.set()
            sampler.join()
        finally:
            dispatcher.stop()
            group.stop()
    result.update(
        workloads=count,
        parallelism=parallelism,
        rss_before_mib=rss_before / 2**20,
        rss_peak_mib=sampler.peak / 2**20,
        rss_growth_mib=(sampler.peak - rss_before) / 2**20,
        note="RSS of the whole benchmark process (workloads pre-built before the baseline is taken)",
    )
    return result


if __name__ == "__main__":
    import json

    print(
        json.dumps(
            measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, 32, Path(tempfile.mkdtemp())), indent=1
        )
    )
