"""The executor's retry and deadline rules, against a real HTTP server standing in for a worker.

The stand-in (:class:`StubWorker`) is a real uvicorn server on 127.0.0.1 speaking
the wire protocol, so the :class:`Dispatcher` under test runs its real HTTP
client, retry loop and stream reader.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_knative.executor.dispatcher import Dispatcher, DispatchOutcome
from airflow_knative.executor.inline_values import UpstreamTry
from airflow_knative.executor.upstream import UpstreamMap
from airflow_knative.protocol import SECRET_HEADER
from airflow_knative.routing import Router, RoutingTable, ServiceEntry, write_routing_table
from airflow_knative.settings import ExecutorSettings
from bench.workloads import DAG_ID, RUN_ID, WorkloadFactory
from tests.conftest import REPO_ROOT
from tests.unit.stub_worker import (
    Behaviour,
    StubWorker,
    accept_then_break,
    accept_then_flood,
    accept_then_hold,
    accept_then_send,
    finished,
    no_answer,
    open_stream_then_silence,
    plain_200,
    run,
    status,
)

SECRET = "unit-test-shared-secret-0123456789"
SERVICE = "stub-worker"
#: How long a test waits for an outcome before it counts as never reported.
OUTCOME_WAIT = 10.0


# -- the dispatcher under test --------------------------------------------------------------


@dataclass
class Harness:
    """Builds a Dispatcher routed at a stub and collects its outcomes."""

    tmp_path: Path
    outcomes: queue.Queue[DispatchOutcome] = field(default_factory=queue.Queue)
    stubs: list[StubWorker] = field(default_factory=list)
    dispatchers: list[Dispatcher] = field(default_factory=list)
    #: What the stand-in database says about task instances: (task_id, map_index) -> try and state.
    #: Task instances not listed here are on try 1 and succeeded.
    db: dict[tuple[str, int], UpstreamTry] = field(default_factory=dict)
    db_reads: int = 0

    def tries(self, dag_id: str, run_id: str, task_ids: frozenset[str]) -> dict[tuple[str, int], UpstreamTry]:
        self.db_reads += 1
        rows = {(t, m): UpstreamTry(1, "success") for t in task_ids for m in range(-1, 8)}
        rows.update({k: v for k, v in self.db.items() if k[0] in task_ids})
        return rows

    def stub(self, *script: Behaviour) -> StubWorker:
        stub = StubWorker(*script).start()
        self.stubs.append(stub)
        return stub

    def dispatcher(
        self,
        url: str,
        *,
        upstream: UpstreamMap | None = None,
        max_connections: int | None = 8,
        **overrides: Any,
    ) -> Dispatcher:
        routing_file = self.tmp_path / "routing.yaml"
        write_routing_table(
            RoutingTable(
                services={SERVICE: ServiceEntry(url=url)},
                tasks={DAG_ID: {"extract": SERVICE, "transform": SERVICE, "load": SERVICE}},
            ),
            routing_file,
        )
        options: dict[str, Any] = {
            "routing_file": str(routing_file),
            "secret_file": str(self.tmp_path / "unused-secret"),
            "connect_timeout": 1.0,
            "accept_timeout": 2.0,
            "dispatch_deadline": 2.0,
            "retry_initial_backoff": 0.01,
            "retry_max_backoff": 0.05,
            "stream_idle_timeout": 5.0,
        }
        options.update(overrides)
        settings = ExecutorSettings(**options)
        dispatcher = Dispatcher(
            settings,
            SECRET,
            Router(settings.routing_path),
            max_connections=max_connections,
            on_outcome=self.outcomes.put,
            # No database in unit tests: the upstream map of a DAG version is given
            # here instead of being read from the serialized DAG.
            upstream_loader=lambda version: dict(upstream or {}),
            tries_loader=self.tries,
            task_log_folder=self.tmp_path / "task-logs",
        )
        dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    def outcome(self, timeout: float = OUTCOME_WAIT) -> DispatchOutcome:
        try:
            return self.outcomes.get(timeout=timeout)
        except queue.Empty:
            pass
        pytest.fail(f"the dispatcher reported no outcome within {timeout}s")

    def close(self) -> None:
        try:
            for dispatcher in self.dispatchers:
                dispatcher.stop()
        finally:
            for stub in self.stubs:
                stub.stop()


@pytest.fixture
def refused_socket() -> Iterator[socket.socket]:
    """A socket bound to an ephemeral port of 127.0.0.1 but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


# -- retries before the worker took the task ---------------------------------------------------


@pytest.mark.parametrize("code", [503, 429, 502, 504])
def test_not_taken_answers_are_retried_until_the_worker_takes_the_task(
    harness: Harness, make_workload: WorkloadFactory, code: int
) -> None:
    stub = harness.stub(status(code), status(code), run())
    workload = make_workload("extract")
    harness.dispatcher(stub.url).submit(workload)

    outcome = harness.outcome()

    assert outcome.state == "success", outcome.info
    assert outcome.key == workload.ti.key
    assert stub.posts == 3


def test_retry_after_is_honoured_between_attempts(harness: Harness, make_workload: WorkloadFactory) -> None:
    stub = harness.stub(status(503, {"Retry-After": "1"}), run())
    harness.dispatcher(stub.url, dispatch_deadline=10.0).submit(make_workload())

    assert harness.outcome().state == "success"
    first, second = stub.received
    assert second.at - first.at >= 1.0


def test_retry_after_does_not_stretch_the_dispatch_deadline(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """A worker asking to come back much later than the deadline does not hold the task past it."""
    stub = harness.stub(status(503, {"Retry-After": "60"}))
    dispatcher = harness.dispatcher(stub.url, dispatch_deadline=0.5)
    started = time.monotonic()
    dispatcher.submit(make_workload())

    outcome = harness.outcome(timeout=2.5)  # the deadline plus slack, far below the 60 s asked for

    assert outcome.state == "failed"
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_retried_until_the_deadline_then_failed(
    harness: Harness, make_workload: WorkloadFactory, refused_socket: socket.socket
) -> None:
    port = refused_socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    deadline, max_backoff = 1.0, 0.05
    dispatcher = harness.dispatcher(url, dispatch_deadline=deadline, retry_max_backoff=max_backoff)
    started = time.monotonic()
    dispatcher.submit(make_workload())

    outcome = harness.outcome()
    elapsed = time.monotonic() - started

    assert outcome.state == "failed"
    assert url in (outcome.info or "")
    assert "Cannot connect to host" in (outcome.info or "")  # the reason, as the client library says it
    # kept retrying up to the deadline (less one backoff), and gave up soon after it
    assert deadline - max_backoff <= elapsed < deadline + 2.0


def test_connection_refused_until_the_worker_comes_up_then_succeeds(
    harness: Harness, make_workload: WorkloadFactory, refused_socket: socket.socket
) -> None:
    """A cold worker that is not listening yet is retried: the task runs once it listens."""
    port = refused_socket.getsockname()[1]
    harness.dispatcher(f"http://127.0.0.1:{port}", dispatch_deadline=10.0).submit(make_workload())
    time.sleep(0.3)  # several refused attempts happen meanwhile (backoff is 0.01-0.05 s)
    stub = StubWorker(run())
    harness.stubs.append(stub)
    stub.start(sock=refused_socket)

    assert harness.outcome().state == "success"
    assert stub.posts == 1


# -- answers that are final ------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401])
def test_rejections_are_not_retried(harness: Harness, make_workload: WorkloadFactory, code: int) -> None:
    stub = harness.stub(status(code), run())
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == "failed"
    assert str(code) in (outcome.info or "")
    assert stub.url in (outcome.info or "")
    assert stub.posts == 1


def test_broken_connection_after_accepted_is_not_resent_and_reported_lost(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(accept_then_break(), run())
    workload = make_workload()
    harness.dispatcher(stub.url).submit(workload)

    outcome = harness.outcome()

    assert outcome.state == "lost"
    assert outcome.key == workload.ti.key
    time.sleep(0.2)  # a wrong resend would arrive now
    assert stub.posts == 1


def test_no_accepted_within_accept_timeout_is_failed_and_not_resent(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(open_stream_then_silence(), run())
    dispatcher = harness.dispatcher(stub.url, accept_timeout=0.5, dispatch_deadline=5.0)
    started = time.monotonic()
    dispatcher.submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == "failed"
    assert "accepted" in (outcome.info or "")
    assert time.monotonic() - started < 0.5 + 3.0
    assert stub.posts == 1


def test_worker_that_never_answers_at_all_is_bounded_by_accept_timeout(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """No response headers either: the accept timeout still ends the attempt."""
    stub = harness.stub(no_answer())
    dispatcher = harness.dispatcher(stub.url, accept_timeout=0.3, dispatch_deadline=0.5)
    dispatcher.submit(make_workload())

    outcome = harness.outcome(timeout=2.5)

    assert outcome.state == "failed"


def test_non_protocol_200_answer_is_reported_failed(harness: Harness, make_workload: WorkloadFactory) -> None:
    """A URL that answers 200 but is not a worker (wrong route) fails the task with a message."""
    stub = harness.stub(plain_200("<html>this is not a worker</html>"))
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome(timeout=2.0)

    assert outcome.state == "failed"
    assert stub.url in (outcome.info or "")
    assert stub.posts == 1


def test_malformed_event_after_accepted_is_reported_and_not_resent(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(accept_then_send(b"not json at all\n"), run())
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome(timeout=2.0)

    assert outcome.state in ("lost", "failed")
    assert stub.posts == 1


def test_accepted_task_streams_heartbeats_then_succeeds(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run(heartbeats=5))
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == "success"
    assert stub.posts == 1


@pytest.mark.parametrize(
    ("state", "exit_code", "expected"),
    [
        ("success", 0, "success"),
        ("failed", 0, "failed"),
        ("up_for_retry", 0, "failed"),
        ("success", 1, "failed"),
        (None, -9, "failed"),
    ],
)
def test_worker_finished_event_decides_the_outcome(
    harness: Harness,
    make_workload: WorkloadFactory,
    state: str | None,
    exit_code: int,
    expected: str,
) -> None:
    stub = harness.stub(run(finished(state, exit_code, error="boom" if expected == "failed" else None)))
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == expected
    if expected == "failed":
        assert outcome.info == "boom"


def test_unroutable_task_is_failed_without_a_request(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    harness.dispatcher(stub.url).submit(make_workload("not_in_the_routing_file"))

    outcome = harness.outcome()

    assert outcome.state == "failed"
    assert "not_in_the_routing_file" in (outcome.info or "")
    assert stub.posts == 0


# -- what is sent --------------------------------------------------------------------------


def test_request_carries_the_secret_and_airflows_workload(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    workload = make_workload("extract")
    harness.dispatcher(stub.url).submit(workload)

    assert harness.outcome().state == "success"
    (request,) = stub.received
    assert request.headers[SECRET_HEADER.lower()] == SECRET
    assert request.body["workload"] == json.loads(workload.model_dump_json())
    assert request.body["inline_xcoms"] == []


def test_return_value_is_cached_and_sent_inline_to_the_downstream_task(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    value = {"rows": [1, 2, 3], "source": "s3://bucket/key"}
    stub = harness.stub(run(finished(has_return_value=True, return_value=value)), run())
    dispatcher = harness.dispatcher(stub.url, upstream={"transform": frozenset({"extract"})})
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"

    cached = dispatcher.results.inline_for(DAG_ID, RUN_ID, ["extract"], 10**6)
    assert [(x.task_id, x.map_index, x.value) for x in cached] == [("extract", -1, value)]

    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))
    assert harness.outcome().state == "success"
    assert stub.received[1].body["inline_xcoms"] == [{"task_id": "extract", "map_index": -1, "value": value}]


def test_a_return_value_larger_than_any_read_buffer_arrives_whole(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """A ``finished`` line of several MiB (the return value rides in it) is read as one event."""
    value = {"blob": "v" * (3 * 2**20), "tail": list(range(1000))}
    stub = harness.stub(run(finished(has_return_value=True, return_value=value), heartbeats=2))
    dispatcher = harness.dispatcher(stub.url, inline_cache_max_bytes=10 * 2**20)
    dispatcher.submit(make_workload("extract"))
    assert harness.outcome().state == "success"

    cached = dispatcher.results.inline_for(DAG_ID, RUN_ID, ["extract"], 10 * 2**20)
    assert [(x.task_id, x.value) for x in cached] == [("extract", value)]


def test_tasks_sent_to_one_worker_reuse_its_connections(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """Each task must not cost a new TCP connection (on a cluster: to the queue-proxy or activator).

    One task after another reuses one connection; tasks at once use at most
    ``max_connections``, kept open for the next ones.
    """
    stub = harness.stub(run(heartbeats=1))
    dispatcher = harness.dispatcher(stub.url, max_connections=4)
    for index in range(10):
        dispatcher.submit(make_workload("extract", map_index=index))
        assert harness.outcome().state == "success"
    assert len({r.client_port for r in stub.received}) == 1

    for index in range(10, 50):
        dispatcher.submit(make_workload("extract", map_index=index))
    assert all(harness.outcome().state == "success" for _ in range(40))
    assert len({r.client_port for r in stub.received}) <= 4


def test_values_of_other_runs_and_non_upstream_tasks_are_not_sent(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run(finished(has_return_value=True, return_value=41)), run())
    dispatcher = harness.dispatcher(stub.url, upstream={"transform": frozenset({"extract"})})
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"

    version = extract.ti.dag_version_id
    dispatcher.submit(make_workload("transform", run_id="scheduled__other", dag_version_id=version))
    dispatcher.submit(make_workload("load", dag_version_id=version))
    assert harness.outcome().state == "success"
    assert harness.outcome().state == "success"

    assert [r.body["inline_xcoms"] for r in stub.received[1:]] == [[], []]


def test_values_above_inline_max_bytes_are_not_sent(harness: Harness, make_workload: WorkloadFactory) -> None:
    big = "x" * 500
    stub = harness.stub(run(finished(has_return_value=True, return_value=big)), run())
    dispatcher = harness.dispatcher(
        stub.url, upstream={"transform": frozenset({"extract"})}, inline_max_bytes=100
    )
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"

    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))
    assert harness.outcome().state == "success"
    assert stub.received[1].body["inline_xcoms"] == []


def test_submit_returns_at_once_while_the_worker_is_slow(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """The scheduler never waits on HTTP: submit only hands the workload to the dispatcher's loop."""
    stub = harness.stub(run(accept_delay=1.0))
    dispatcher = harness.dispatcher(stub.url, accept_timeout=5.0)
    workloads = [make_workload("extract"), make_workload("transform"), make_workload("load")]

    started = time.monotonic()
    for workload in workloads:
        dispatcher.submit(workload)
    submitted_in = time.monotonic() - started

    assert submitted_in < 0.5
    assert harness.outcomes.empty()
    outcomes = [harness.outcome() for _ in workloads]
    assert {o.key for o in outcomes} == {w.ti.key for w in workloads}
    assert {o.state for o in outcomes} == {"success"}


def test_stop_returns_the_number_of_accepted_tasks_still_streaming(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(accept_then_hold())
    dispatcher = harness.dispatcher(stub.url)
    dispatcher.submit(make_workload())
    deadline = time.monotonic() + 5
    while stub.heartbeats_sent == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # let the heartbeat be read, so the stream is quiet when stop() lands

    assert dispatcher.stop() == 1
    assert harness.outcomes.empty()


def test_stop_cancels_busy_streams_at_once(harness: Harness, make_workload: WorkloadFactory) -> None:
    """Scheduler shutdown is not held up by streams that are busy delivering heartbeats.

    With Python 3.11's asyncio.wait_for a cancellation that lands while a line is ready
    is swallowed; with several busy streams one of them nearly always hits that window.
    """
    streams = 32
    stub = harness.stub(accept_then_flood())
    dispatcher = harness.dispatcher(stub.url, max_connections=None)
    shared = {"knative": {"service": SERVICE}}  # routed by executor_config, not the tasks table
    for i in range(streams):
        dispatcher.submit(make_workload(f"busy_{i}", executor_config=shared))
    deadline = time.monotonic() + 5
    while (stub.posts < streams or stub.heartbeats_sent < streams * 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stub.posts == streams

    started = time.monotonic()
    streaming = dispatcher.stop()
    took = time.monotonic() - started

    assert streaming == streams
    assert took < 2.0  # the dispatcher gives tasks that ignore cancellation 5 s
    assert harness.outcomes.empty()


# -- exact inline values -------------------------------------------------------------------------


def test_a_value_from_an_older_try_is_never_sent(harness: Harness, make_workload: WorkloadFactory) -> None:
    """The upstream was cleared and re-ran elsewhere (try 2): the cached try-1 value is stale."""
    stub = harness.stub(run(finished(has_return_value=True, return_value="old")), run())
    dispatcher = harness.dispatcher(stub.url, upstream={"transform": frozenset({"extract"})})
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"

    harness.db[("extract", -1)] = UpstreamTry(2, "success")
    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))

    assert harness.outcome().state == "success"
    assert stub.received[1].body["inline_xcoms"] == []


def test_a_rerun_that_returns_nothing_drops_the_old_value(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run(finished(has_return_value=True, return_value="old")), run(), run())
    dispatcher = harness.dispatcher(stub.url, upstream={"transform": frozenset({"extract"})})
    extract = make_workload("extract")
    dispatcher.submit(extract)
    assert harness.outcome().state == "success"

    # Cleared and run again through this executor with the same try number (as a
    # stuck-in-queued requeue does); this time it returns nothing.
    dispatcher.submit(make_workload("extract", dag_version_id=extract.ti.dag_version_id))
    assert harness.outcome().state == "success"
    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))

    assert harness.outcome().state == "success"
    assert stub.received[2].body["inline_xcoms"] == []
    assert len(dispatcher.results) == 0


def test_a_failed_try_leaves_no_value_behind(harness: Harness, make_workload: WorkloadFactory) -> None:
    stub = harness.stub(run(finished(has_return_value=True, return_value="old")), run(finished("failed", 1)))
    dispatcher = harness.dispatcher(stub.url)
    dispatcher.submit(make_workload("extract"))
    assert harness.outcome().state == "success"
    assert len(dispatcher.results) == 1

    dispatcher.submit(make_workload("extract", try_number=2))

    assert harness.outcome().state == "failed"
    assert len(dispatcher.results) == 0


def test_downstream_waits_for_the_finished_event_of_an_upstream_airflow_saw_end(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """The scheduler queued the downstream before the upstream's ``finished`` was read: no race."""
    slow_finish = run(finished(has_return_value=True, return_value=[1, 2]), heartbeats=80)
    stub = harness.stub(slow_finish, run())
    dispatcher = harness.dispatcher(
        stub.url, upstream={"transform": frozenset({"extract"})}, inline_wait_timeout=30.0
    )
    extract = make_workload("extract")
    harness.db[("extract", -1)] = UpstreamTry(1, "success")  # the task already told Airflow

    dispatcher.submit(extract)
    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))

    outcomes = {o.key.task_id: o.state for o in (harness.outcome(), harness.outcome())}
    assert outcomes == {"extract": "success", "transform": "success"}
    assert stub.received[1].body["inline_xcoms"] == [{"task_id": "extract", "map_index": -1, "value": [1, 2]}]


def test_downstream_does_not_wait_for_an_upstream_still_running_in_airflow(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """E.g. trigger_rule=one_success: the other upstream really still runs."""
    stub = harness.stub(accept_then_hold(), run())
    dispatcher = harness.dispatcher(
        stub.url, upstream={"transform": frozenset({"extract"})}, inline_wait_timeout=60.0
    )
    extract = make_workload("extract")
    harness.db[("extract", -1)] = UpstreamTry(1, "running")

    dispatcher.submit(extract)
    dispatcher.submit(make_workload("transform", dag_version_id=extract.ti.dag_version_id))

    outcome = harness.outcome()
    assert outcome.key.task_id == "transform"
    assert stub.received[1].body["inline_xcoms"] == []


def test_no_database_read_when_nothing_could_be_sent_inline(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    dispatcher = harness.dispatcher(stub.url, upstream={"transform": frozenset({"extract"})})

    dispatcher.submit(make_workload("transform"))

    assert harness.outcome().state == "success"
    assert harness.db_reads == 0


# -- every error ends in an outcome ----------------------------------------------------------------


def test_routing_file_broken_at_runtime_keeps_routing_with_the_last_good_table(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    dispatcher = harness.dispatcher(stub.url)
    dispatcher.submit(make_workload("extract"))
    assert harness.outcome().state == "success"

    routing = dispatcher.router.path
    routing.write_text("services: [unclosed")
    later = time.time() + 2
    os.utime(routing, (later, later))
    dispatcher.submit(make_workload("transform"))

    assert harness.outcome().state == "success"
    assert stub.posts == 2


def test_an_unexpected_error_still_ends_in_a_failed_outcome(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    dispatcher = harness.dispatcher(stub.url)

    def broken(*args: Any, **kwargs: Any) -> str:
        raise KeyError("something nobody expected")

    dispatcher.router.url_for = broken  # type: ignore[method-assign]
    dispatcher.submit(make_workload("extract"))

    outcome = harness.outcome()
    assert outcome.state == "failed"
    assert "something nobody expected" in (outcome.info or "")
    assert stub.posts == 0


def test_why_a_task_never_ran_is_written_into_its_airflow_task_log(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    dispatcher = harness.dispatcher(stub.url)
    workload = make_workload("not_in_the_table")

    dispatcher.submit(workload)

    assert harness.outcome().state == "failed"
    lines = (harness.tmp_path / "task-logs" / workload.log_path).read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["level"] == "error"
    assert "no route for dag_id" in record["event"]
    assert "task_id='not_in_the_table'" in record["event"]


def test_a_refused_task_has_the_refusal_in_its_task_log(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(status(401))
    dispatcher = harness.dispatcher(stub.url)
    workload = make_workload("extract")

    dispatcher.submit(workload)

    assert harness.outcome().state == "failed"
    text = (harness.tmp_path / "task-logs" / workload.log_path).read_text()
    assert "HTTP 401" in text
    assert "RejectedError" in text


# -- time limits agree with the workload's token -----------------------------------------------------


def jwt_expiring_in(seconds: float) -> str:
    """An (unsigned) JWT whose ``exp`` is ``seconds`` from now; only the expiry is read by the dispatcher."""

    def segment(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{segment({'alg': 'none'})}.{segment({'exp': time.time() + seconds, 'scope': 'workload'})}.sig"


def test_a_task_whose_token_is_about_to_expire_is_not_sent(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(run())
    dispatcher = harness.dispatcher(stub.url, token_margin=30.0)
    workload = make_workload().model_copy(update={"token": jwt_expiring_in(10)})

    dispatcher.submit(workload)

    outcome = harness.outcome()
    assert outcome.state == "failed"
    assert "token" in (outcome.info or "")
    assert stub.posts == 0


def test_retries_stop_at_the_tokens_expiry_not_at_the_dispatch_deadline(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    """A worker that keeps answering 503: the task fails when its token runs out, not after 300 s."""
    stub = harness.stub(status(503))
    dispatcher = harness.dispatcher(
        stub.url, dispatch_deadline=300.0, accept_timeout=300.0, token_margin=30.0
    )
    workload = make_workload().model_copy(update={"token": jwt_expiring_in(31.5)})

    dispatcher.submit(workload)

    assert harness.outcome(timeout=60).state == "failed"


def test_revoke_stops_dispatching_without_an_outcome(
    harness: Harness, make_workload: WorkloadFactory
) -> None:
    stub = harness.stub(status(503))
    dispatcher = harness.dispatcher(stub.url, dispatch_deadline=60.0)
    workload = make_workload()
    dispatcher.submit(workload)
    deadline = time.monotonic() + 5
    while stub.posts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    dispatcher.revoke(workload.ti.key)
    time.sleep(0.3)
    posts = stub.posts
    time.sleep(0.3)

    assert stub.posts == posts, "no more attempts after revoke"
    assert harness.outcomes.empty()


def test_a_stopped_dispatcher_leaves_no_pending_stream_readers(tmp_path: Path) -> None:
    """A scheduler that stops its executor logs no "Task was destroyed but it is pending!" errors.

    Runs the dispatch benchmark (the real Dispatcher, 200 workloads, a stub worker process)
    in its own interpreter: those errors appear only when the interpreter exits.
    """
    command = [sys.executable, "-m", "bench", "--profile", "smoke", "--sections", "dispatch"]
    command += ["--database", "sqlite", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failed or wrong runs: 0" in done.stdout + done.stderr
    assert "Task was destroyed" not in done.stdout + done.stderr
