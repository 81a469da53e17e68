"""The executor's metrics, received by a real StatsD listener through Airflow's own stats client.

The dispatcher talks to a real HTTP stand-in worker (:class:`StubWorker`); the
metrics go through Airflow's ``[metrics] statsd_*`` settings and its statsd
client over UDP, as in the scheduler. What needs a whole stack (a real run) is in
tests/e2e/test_metrics.py; here are the cases a stub can script exactly: a
stream that breaks after ``accepted``, refusals, adoption, a team tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from airflow._shared.observability.metrics import stats
from airflow._shared.observability.metrics.base_stats_logger import NoStatsLogger
from airflow.observability.metrics import stats_utils
from airflow.utils.state import TaskInstanceState

from airflow_knative.executor.knative_executor import KnativeExecutor
from airflow_knative.executor.metrics import ExecutorMetrics
from bench.workloads import WorkloadFactory
from tests.metrics_readers import EXECUTOR_PREFIX, StatsdListener, airflow_statsd_env
from tests.unit.stub_worker import accept_then_break, finished, run, status
from tests.unit.test_dispatcher import Harness

P = EXECUTOR_PREFIX


def _use_statsd(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> None:
    """Point Airflow's stats client at ``port``, as ``[metrics]`` settings do in the scheduler."""
    for name, value in airflow_statsd_env(port).items():
        monkeypatch.setenv(name, value)
    for name, value in extra.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{name}", value)
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    listener = StatsdListener()
    _use_statsd(monkeypatch, listener.port)
    try:
        yield listener
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        listener.close()


def test_retries_are_counted_by_cause_and_dispatch_latency_is_timed(
    statsd: StatsdListener, harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(status(503), status(429), run())
    harness.dispatcher(stub.url).submit(make_workload("extract"))
    assert harness.outcome().state == "success"

    statsd.wait_for_total(P + "tasks_finished.success", 1)
    assert statsd.total(P + "dispatch_retries.http_503") == 1
    assert statsd.total(P + "dispatch_retries.http_429") == 1
    assert statsd.total(P + "dispatch_retries") == 2
    [latency] = statsd.named(P + "dispatch_latency")
    assert latency.kind == "ms"
    assert latency.value > 0


def test_a_stream_broken_after_accepted_counts_as_lost(
    statsd: StatsdListener, harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(accept_then_break())
    harness.dispatcher(stub.url).submit(make_workload())
    assert harness.outcome().state == "lost"

    statsd.wait_for_total(P + "streams_lost", 1)
    statsd.wait_for_total(P + "tasks_finished.lost", 1)


def test_a_refused_task_counts_as_not_run_by_reason(
    statsd: StatsdListener, harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(status(401))
    harness.dispatcher(stub.url).submit(make_workload())
    assert harness.outcome().state == "failed"

    statsd.wait_for_total(P + "tasks_not_run.rejected", 1)
    statsd.wait_for_total(P + "tasks_finished.failed", 1)


def test_inline_hits_and_misses_are_counted_per_upstream_task(
    statsd: StatsdListener, harness: Harness, make_workload: WorkloadFactory
) -> None:
    value = {"rows": [1, 2]}
    stub = harness.stub(run(finished(has_return_value=True, return_value=value)), run(finished()), run())
    dispatcher = harness.dispatcher(stub.url, upstream={"load": frozenset({"extract", "transform"})})
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"
    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))
    assert harness.outcome().state == "success"  # returned nothing: no value to send

    dispatcher.submit(make_workload("load", dag_version_id=extract.ti.dag_version_id))
    assert harness.outcome().state == "success"

    statsd.wait_for_total(P + "tasks_finished.success", 3)
    assert statsd.total(P + "inline_values.hits") == 1  # extract's value went inline
    assert statsd.total(P + "inline_values.misses") == 1  # transform's (none) is the API's business


def test_adopted_and_handed_back_task_instances_are_counted(
    statsd: StatsdListener, make_workload: WorkloadFactory
) -> None:
    executor = KnativeExecutor(parallelism=4)
    tis = [
        SimpleNamespace(key=w.ti.key, id=w.ti.id, state=state, external_executor_id=None)
        for w, state in (
            (make_workload("extract"), TaskInstanceState.RUNNING),
            (make_workload("transform"), TaskInstanceState.RUNNING),
            (make_workload("load"), TaskInstanceState.QUEUED),
        )
    ]

    executor.try_adopt_task_instances(tis)  # type: ignore[arg-type]

    statsd.wait_for_total(P + "tasks_adopted", 2)
    statsd.wait_for_total(P + "tasks_not_adopted", 1)


def test_a_teams_executor_tags_its_metrics_with_the_team(
    statsd: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With InfluxDB-style tags on, each team's figures stay apart (multi-team schedulers)."""
    _use_statsd(monkeypatch, statsd.port, STATSD_INFLUXDB_ENABLED="True")

    ExecutorMetrics("team_a").stream_lost()
    ExecutorMetrics(None).stream_lost()

    statsd.wait_for(P + "streams_lost,team_name=team_a")
    statsd.wait_for(P + "streams_lost")


def test_the_executor_passes_its_team_to_its_metrics() -> None:
    assert KnativeExecutor(parallelism=1, team_name="team_a").metrics._tags == {"team_name": "team_a"}
