"""The worker's Prometheus metrics, counted in the server process where requests arrive.

The pool processes are forked from the server and never touch these objects; the
pool's health is read from :meth:`TaskPool.status` when Prometheus scrapes
(:class:`PoolCollector`), so nothing needs to cross a process boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from airflow_knative.prometheus import DURATION_BUCKETS
from airflow_knative.worker.task_pool import PoolStatus

TASKS_RECEIVED = Counter(
    "airflow_knative_worker_tasks_received", "Workload requests received (POST /v1/workloads)."
)
TASKS_REFUSED = Counter(
    "airflow_knative_worker_tasks_refused",
    "Workload requests answered with an error before 'accepted' (the executor may resend), by reason.",
    ["reason"],
)
TASKS_ACCEPTED = Counter(
    "airflow_knative_worker_tasks_accepted", "Workloads this worker sent 'accepted' for and started."
)
TASKS_FINISHED = Counter(
    "airflow_knative_worker_tasks_finished",
    "Workloads whose task process ended, by the state the task reported ('error': no state, "
    "e.g. its pool process died).",
    ["state"],
)
TASKS_RUNNING = Gauge("airflow_knative_worker_tasks_running", "Workloads running in the pool right now.")
TASK_DURATION = Histogram(
    "airflow_knative_worker_task_duration_seconds",
    "From receiving a workload to its task process's end, by the state the task reported.",
    ["state"],
    buckets=DURATION_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "airflow_knative_worker_request_duration_seconds",
    "POST /v1/workloads from arrival to the last byte of the answer (a refusal, or the whole stream).",
    buckets=DURATION_BUCKETS,
)

#: Label values of TASKS_REFUSED, one per refusal in server._admit.
REFUSAL_REASONS = ("unauthorized", "not_ready", "invalid_workload", "pool_broken", "at_capacity")


class PoolCollector(Collector):
    """Pool processes alive, busy and replaced, read from the pool at scrape time."""

    def __init__(self) -> None:
        self._status: Callable[[], PoolStatus] | None = None

    def watch(self, status: Callable[[], PoolStatus]) -> None:
        """Report this pool from now on (one pool per worker process)."""
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The pool's figures; nothing until a pool is watched."""
        if self._status is None:
            return
        status = self._status()
        yield GaugeMetricFamily(
            "airflow_knative_worker_pool_processes_alive",
            "Pre-forked pool processes alive (each runs one task at a time).",
            value=status.alive,
        )
        yield GaugeMetricFamily(
            "airflow_knative_worker_pool_processes_busy",
            "Pool processes running a task right now.",
            value=status.busy,
        )
        yield CounterMetricFamily(
            "airflow_knative_worker_pool_processes_replaced",
            "Pool processes that died and were replaced since the worker started.",
            value=status.replacements,
        )


POOL = PoolCollector()
REGISTRY.register(POOL)
