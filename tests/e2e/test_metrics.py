"""Every metric, read after real workflow runs on the real local stack.

The scheduler's KnativeExecutor sends its metrics through Airflow's ``[metrics]``
statsd settings to a UDP listener of this test; the worker's and the gateway's
``GET /metrics`` are scraped over HTTP. One worker with one pool process makes
the mapped tasks of ``etl_example_dynamic`` (five at once) meet a full worker,
so retries happen for real (429, counted by the worker as ``at_capacity``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from airflow_knative.local.processes import wait_until
from airflow_knative.local.stack import LocalStack
from tests.conftest import WORKFLOWS
from tests.e2e.conftest import AUTH, stack_config
from tests.metrics_readers import (
    EXECUTOR_PREFIX,
    Samples,
    StatsdListener,
    airflow_statsd_env,
    sample_value,
    scrape,
)

pytestmark = pytest.mark.e2e

P = EXECUTOR_PREFIX
#: A downstream task whose upstream returns nothing: its upstream value is an inline miss.
PROBE_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="metrics_probe", schedule=None, catchup=False)
def metrics_probe():
    @task
    def first():
        return None

    @task
    def second():
        return "done"

    first() >> second()


metrics_probe()
"""
#: (DAG, input, tasks it runs, expected output)
RUNS = [
    ("compute_avg_distributed", [1, 2, 3, 4], 4, 2.5),
    ("etl_example_dynamic", [1, 2, 3, 4, 5], 7, 30),
    ("metrics_probe", None, 2, "done"),
]
TASKS = sum(run[2] for run in RUNS)


@dataclass
class MetricsStack:
    stack: LocalStack
    statsd: StatsdListener
    gateway: httpx.Client

    @property
    def worker_url(self) -> str:
        return self.stack.config.worker_urls[0]

    @property
    def gateway_url(self) -> str:
        return self.stack.config.gateway_url


@pytest.fixture(scope="module")
def metrics_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsStack]:
    """A stack whose scheduler sends StatsD to this test, after the RUNS went through the gateway."""
    dags = tmp_path_factory.mktemp("metrics-dags")
    for source in WORKFLOWS.glob("*.py"):
        shutil.copy(source, dags / source.name)
    (dags / "metrics_probe.py").write_text(PROBE_DAG)
    statsd = StatsdListener()
    config = stack_config(tmp_path_factory.mktemp("metrics-stack"), dags, workers=1, worker_concurrency=1)
    stack = LocalStack(config)
    with pytest.MonkeyPatch.context() as env:  # Airflow's own [metrics] settings, read by the scheduler
        for name, setting in airflow_statsd_env(statsd.port).items():
            env.setenv(name, setting)
        stack.start()
    try:
        with httpx.Client(base_url=config.gateway_url, auth=AUTH, timeout=180) as gateway:
            for dag_id, data, _, output in RUNS:
                response = gateway.post(f"/runWorkflow/{dag_id}", json={"input": data})
                assert response.status_code == 200, response.text
                assert response.json()["output"] == output
            yield MetricsStack(stack, statsd, gateway)
    finally:
        stack.stop()
        statsd.close()


def test_the_executor_sends_its_metrics_to_statsd(metrics_stack: MetricsStack) -> None:
    statsd = metrics_stack.statsd

    wait_until(lambda: statsd.total(P + "tasks_finished.success") == TASKS, 30, "the metric to arrive")
    latencies = statsd.named(P + "dispatch_latency")
    assert len(latencies) == TASKS
    assert all(s.kind == "ms" and s.value > 0 for s in latencies)
    assert statsd.total(P + "inline_values.hits") >= 4  # compute_avg_distributed's values at least
    assert statsd.total(P + "inline_values.misses") >= 1  # metrics_probe's 'second'
    assert statsd.total(P + "dispatch_retries.http_429") >= 1  # five mapped tasks, one pool process
    assert statsd.total(P + "dispatch_retries") == statsd.total(P + "dispatch_retries.http_429")
    assert statsd.total(P + "streams_lost") == 0
    # The in-flight gauge goes back to zero once every task has ended.
    wait_until(lambda: statsd.named(P + "tasks_in_flight")[-1].value == 0, 30, "the metric to arrive")
    assert max(s.value for s in statsd.named(P + "tasks_in_flight")) >= 1
    assert statsd.named(P + "tasks_watched")[-1].value == 0


def test_the_worker_serves_its_metrics(metrics_stack: MetricsStack) -> None:
    def settled() -> Samples | None:
        samples = scrape(metrics_stack.worker_url)
        done = sample_value(samples, "airflow_knative_worker_tasks_finished_total", state="success")
        return (
            samples
            if done == TASKS and sample_value(samples, "airflow_knative_worker_tasks_running") == 0
            else None
        )

    samples: Samples = wait_until(settled, 30, "the metric to arrive")
    refused = sample_value(samples, "airflow_knative_worker_tasks_refused_total", reason="at_capacity")
    assert sample_value(samples, "airflow_knative_worker_tasks_accepted_total") == TASKS
    assert sample_value(samples, "airflow_knative_worker_tasks_received_total") == TASKS + refused
    assert refused == metrics_stack.statsd.total(P + "dispatch_retries.http_429")
    assert (
        sample_value(samples, "airflow_knative_worker_task_duration_seconds_count", state="success") == TASKS
    )
    assert sample_value(samples, "airflow_knative_worker_task_duration_seconds_sum", state="success") > 0
    assert sample_value(samples, "airflow_knative_worker_request_duration_seconds_count") == TASKS + refused
    assert sample_value(samples, "airflow_knative_worker_pool_processes_alive") == 1
    assert sample_value(samples, "airflow_knative_worker_pool_processes_busy") == 0
    assert sample_value(samples, "airflow_knative_worker_pool_processes_replaced_total") == 0


def test_the_gateway_serves_its_metrics(metrics_stack: MetricsStack) -> None:
    samples = scrape(metrics_stack.gateway_url)

    assert sample_value(samples, "airflow_knative_gateway_runs_triggered_total") == len(RUNS)
    assert sample_value(samples, "airflow_knative_gateway_results_total", outcome="success") == len(RUNS)
    assert sample_value(samples, "airflow_knative_gateway_wait_duration_seconds_count") == len(RUNS)
    assert sample_value(samples, "airflow_knative_gateway_wait_duration_seconds_sum") > 0
    assert sample_value(samples, "airflow_knative_gateway_request_duration_seconds_count") == len(RUNS)


def test_the_gateway_counts_failed_and_rate_limited_logins(metrics_stack: MetricsStack) -> None:
    """Last in this module: afterwards this client address may not log in for a minute."""
    url = f"{metrics_stack.gateway_url}/runWorkflow/etl_example"

    def call(password: str) -> int:
        return httpx.post(url, json={"input": [1]}, auth=(AUTH[0], password), timeout=60).status_code

    assert call("wrong-password-0") == 401
    assert call("wrong-password-0") == 401  # answered from the negative cache
    samples = scrape(metrics_stack.gateway_url)
    assert sample_value(samples, "airflow_knative_gateway_login_failures_total", source="airflow") == 1
    assert sample_value(samples, "airflow_knative_gateway_login_failures_total", source="cached") == 1

    statuses = [call(f"wrong-password-{i}") for i in range(1, 11)]  # 10 failures from one address
    samples = scrape(metrics_stack.gateway_url)
    assert statuses[-1] == 429, statuses
    assert sample_value(samples, "airflow_knative_gateway_logins_rate_limited_total") == statuses.count(429)
    assert sample_value(samples, "airflow_knative_gateway_results_total", outcome="refused") == 2 + len(
        statuses
    )
    assert sample_value(samples, "airflow_knative_gateway_runs_triggered_total") == len(RUNS)
