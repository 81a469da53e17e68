"""``KnativeExecutor``: Airflow's executor interface on top of the dispatcher."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.executors.workloads import BundleInfo, ExecuteCallback
from airflow.executors.workloads import TestConnection as ConnectionTestWorkload
from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod
from airflow.utils.state import CallbackState, TaskInstanceState

from airflow_knative.executor import KnativeExecutor
from airflow_knative.executor.dispatcher import DispatchOutcome
from airflow_knative.executor.task_watch import TaskRow, TaskWatch
from airflow_knative.routing import RoutingFileError, RoutingTable, ServiceEntry, write_routing_table
from airflow_knative.settings import SECTION, ExecutorSettings, SettingsError
from bench.workloads import DAG_ID, WorkloadFactory
from tests.unit.stub_worker import StubWorker, finished, run

SECRET = "executor-unit-test-secret-0123456789"


def env_name(option: str) -> str:
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


@pytest.fixture(autouse=True)
def clean_knative_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without any [knative_executor] option set through the environment."""
    for spec in dataclasses.fields(ExecutorSettings):
        monkeypatch.delenv(env_name(spec.name), raising=False)


@pytest.fixture
def executor() -> Iterator[KnativeExecutor]:
    ex = KnativeExecutor(parallelism=4)
    try:
        yield ex
    finally:
        ex.end()


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str = "http://127.0.0.1:9") -> Path:
    """Point [knative_executor] at a routing file (routing extract/transform to ``url``) and a secret."""
    routing_file = tmp_path / "routing.yaml"
    write_routing_table(
        RoutingTable(
            services={"svc": ServiceEntry(url=url)},
            tasks={DAG_ID: {"extract": "svc", "transform": "svc"}},
        ),
        routing_file,
    )
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv(env_name("routing_file"), str(routing_file))
    monkeypatch.setenv(env_name("secret_file"), str(secret_file))
    monkeypatch.setenv(env_name("dispatch_deadline"), "2")
    monkeypatch.setenv(env_name("retry_initial_backoff"), "0.01")
    return routing_file


def make_callback() -> ExecuteCallback:
    return ExecuteCallback(
        token="token",
        dag_rel_path="dags/compute_avg.py",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path=None,
        callback=CallbackDTO(
            id=str(uuid.uuid4()),
            fetch_method=CallbackFetchMethod.IMPORT_PATH,
            data={"path": "my_callbacks.notify"},
        ),
    )


def make_connection_test() -> ConnectionTestWorkload:
    return ConnectionTestWorkload(
        token="token", connection_test_id=uuid.uuid4(), connection_id="my_postgres", timeout=30
    )


# -- queue_workload --------------------------------------------------------------------------


def test_callbacks_and_connection_tests_are_queued_not_refused(executor: KnativeExecutor) -> None:
    """Airflow 3.3's scheduler does not catch errors from queue_workload: refusing would stop it."""
    callback = make_callback()
    test = make_connection_test()

    executor.queue_workload(callback, session=None)  # type: ignore[arg-type]
    executor.queue_workload(test, session=None)  # type: ignore[arg-type]

    assert KnativeExecutor.supports_callbacks and KnativeExecutor.supports_connection_test
    assert executor.queued_callbacks == {callback.key: callback}
    assert executor.queued_connection_tests == {test.key: test}


def test_task_workloads_are_queued(executor: KnativeExecutor, make_workload: WorkloadFactory) -> None:
    workload = make_workload()

    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]

    assert executor.queued_tasks == {workload.ti.key: workload}


# -- start -----------------------------------------------------------------------------------


def test_start_without_routing_file_names_the_option(executor: KnativeExecutor) -> None:
    with pytest.raises(SettingsError) as caught:
        executor.start()

    assert "[knative_executor] routing_file" in str(caught.value)
    assert env_name("routing_file") in str(caught.value)


def test_start_without_secret_file_names_the_option(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, tmp_path)
    monkeypatch.delenv(env_name("secret_file"))

    with pytest.raises(SettingsError, match=r"\[knative_executor\] secret_file"):
        executor.start()


def test_start_with_a_missing_routing_file_fails(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, tmp_path)
    missing = tmp_path / "not-generated-yet.yaml"
    monkeypatch.setenv(env_name("routing_file"), str(missing))

    with pytest.raises(RoutingFileError) as caught:
        executor.start()

    assert str(missing) in str(caught.value)


def test_start_with_a_malformed_routing_file_fails(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    routing_file = configure(monkeypatch, tmp_path)
    routing_file.write_text("services: [unclosed")

    with pytest.raises(RoutingFileError, match="not valid YAML"):
        executor.start()


def test_start_with_a_short_secret_fails(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, tmp_path)
    (tmp_path / "secret").write_text("short")

    with pytest.raises(SettingsError, match="shorter than 16"):
        executor.start()


# -- sync ------------------------------------------------------------------------------------


def test_sync_reports_success(executor: KnativeExecutor, make_workload: WorkloadFactory) -> None:
    key = make_workload().ti.key
    executor.running.add(key)
    executor._outcomes.put(DispatchOutcome(key, "success"))

    executor.sync()

    assert key not in executor.running
    assert executor.event_buffer[key] == (TaskInstanceState.SUCCESS, None)


def test_sync_reports_failure_with_its_reason(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    key = make_workload().ti.key
    executor.running.add(key)
    executor._outcomes.put(DispatchOutcome(key, "failed", "HTTP 401: wrong secret"))

    executor.sync()

    assert key not in executor.running
    assert executor.event_buffer[key] == (TaskInstanceState.FAILED, "HTTP 401: wrong secret")


def test_sync_keeps_the_slot_of_a_lost_task_and_watches_it(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    """A broken stream does not free the slot: the task may still run on its worker."""
    workload = make_workload()
    key = workload.ti.key
    executor.running.add(key)
    executor._outcomes.put(DispatchOutcome(key, "lost", "connection reset", ti_id=str(workload.ti.id)))

    executor.sync()

    assert key in executor.running
    assert key in executor._watch
    assert key not in executor.event_buffer


def test_a_watched_task_is_reported_when_airflow_records_its_end(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    workload = make_workload()
    key, ti_id = workload.ti.key, str(workload.ti.id)
    rows = {ti_id: TaskRow(1, "running")}
    executor._watch = TaskWatch(interval=0.0, load_rows=lambda ids: {i: rows[i] for i in ids if i in rows})
    executor.running.add(key)
    executor._outcomes.put(DispatchOutcome(key, "lost", "connection reset", ti_id=ti_id))

    executor.sync()
    assert key in executor.running

    rows[ti_id] = TaskRow(1, "success")
    executor.sync()

    assert key not in executor.running
    assert executor.event_buffer[key] == (TaskInstanceState.SUCCESS, None)


def fake_ti(workload: Any, state: TaskInstanceState) -> SimpleNamespace:
    """The attributes of a TaskInstance that try_adopt_task_instances reads (no database here)."""
    ti = workload.ti
    return SimpleNamespace(key=ti.key, id=ti.id, state=state, external_executor_id=None)


def test_running_task_instances_are_adopted_and_queued_ones_handed_back(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    running = fake_ti(make_workload("extract"), TaskInstanceState.RUNNING)
    queued = fake_ti(make_workload("transform"), TaskInstanceState.QUEUED)

    not_adopted = executor.try_adopt_task_instances([running, queued])  # type: ignore[list-item]

    assert list(not_adopted) == [queued]
    assert executor.running == {running.key}
    assert running.key in executor._watch
    assert not executor.event_buffer


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (TaskRow(1, "success"), (TaskInstanceState.SUCCESS, None)),
        (TaskRow(1, "up_for_retry"), (TaskInstanceState.FAILED, "task instance is up_for_retry in Airflow")),
        (TaskRow(1, "failed"), (TaskInstanceState.FAILED, "task instance is failed in Airflow")),
        (TaskRow(2, "queued"), None),  # cleared and run again: that try is over, nothing to report
        (None, None),  # reset to a new task instance id
    ],
)
def test_an_adopted_task_frees_its_slot_when_its_try_ends(
    executor: KnativeExecutor, make_workload: WorkloadFactory, row: TaskRow | None, expected: Any
) -> None:
    ti = fake_ti(make_workload(), TaskInstanceState.RUNNING)
    executor._watch = TaskWatch(interval=0.0, load_rows=lambda ids: {str(ti.id): row} if row else {})
    executor.try_adopt_task_instances([ti])  # type: ignore[list-item]

    executor.sync()

    assert ti.key not in executor.running
    assert executor.event_buffer.get(ti.key) == expected


def test_revoke_task_frees_the_slot_stops_dispatching_and_reports_nothing(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    recorder = RecordingDispatcher()
    executor._dispatcher = recorder  # type: ignore[assignment]
    workload = make_workload()
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor._process_workloads([workload])
    executor._watch.add(workload.ti.key, str(workload.ti.id))

    executor.revoke_task(ti=fake_ti(workload, TaskInstanceState.QUEUED))  # type: ignore[arg-type]

    assert recorder.revoked == [workload.ti.key]
    assert workload.ti.key not in executor.running
    assert workload.ti.key not in executor._watch
    # An outcome the dispatcher had already collected is dropped: Airflow moved the task on.
    executor._outcomes.put(DispatchOutcome(workload.ti.key, "failed", "late"))
    executor.sync()
    assert not executor.event_buffer


def test_sync_drains_every_outcome(executor: KnativeExecutor, make_workload: WorkloadFactory) -> None:
    keys = [make_workload(f"task_{i}").ti.key for i in range(3)]
    executor.running.update(keys)
    for key, state in zip(keys, ("success", "failed", "lost"), strict=True):
        executor._outcomes.put(DispatchOutcome(key, state))  # type: ignore[arg-type]

    executor.sync()

    assert not executor.running
    assert set(executor.event_buffer) == set(keys[:2])
    assert executor._outcomes.empty()


# -- workloads reach the dispatcher --------------------------------------------------------


class RecordingDispatcher:
    """Records submits and revokes; stands in for the Dispatcher where only the hand-over is under test."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []
        self.revoked: list[Any] = []
        self.in_flight = 0

    def submit(self, workload: Any) -> None:
        self.submitted.append(workload)

    def revoke(self, key: Any) -> None:
        self.revoked.append(key)

    def stop(self) -> int:
        return 0


def test_process_workloads_moves_tasks_to_running_and_submits_them(
    executor: KnativeExecutor, make_workload: WorkloadFactory
) -> None:
    recorder = RecordingDispatcher()
    executor._dispatcher = recorder  # type: ignore[assignment]
    workloads = [make_workload("extract"), make_workload("transform")]
    for workload in workloads:
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]

    executor._process_workloads(workloads)

    assert recorder.submitted == workloads
    assert executor.running == {w.ti.key for w in workloads}
    assert not executor.queued_tasks


def test_a_task_runs_through_start_heartbeat_and_sync(
    executor: KnativeExecutor,
    make_workload: WorkloadFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Start, queue, heartbeat until the worker's answer comes back as a SUCCESS event."""
    stub = StubWorker(run(finished("success"))).start()
    try:
        configure(monkeypatch, tmp_path, url=stub.url)
        executor.start()
        workload = make_workload("extract")
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]

        deadline = time.monotonic() + 10
        while workload.ti.key not in executor.event_buffer and time.monotonic() < deadline:
            executor.heartbeat()
            time.sleep(0.02)

        assert executor.event_buffer.get(workload.ti.key) == (TaskInstanceState.SUCCESS, None)
        assert not executor.running
        assert stub.posts == 1
        assert stub.received[0].headers["x-airflow-knative-secret"] == SECRET
    finally:
        executor.end()
        stub.stop()


def run_until_reported(executor: KnativeExecutor, key: Any) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        executor.heartbeat()
        event = executor.event_buffer.get(key)
        if event is not None and event[0] != "running":  # RUNNING is sent when it is dispatched
            return event
        time.sleep(0.02)
    return executor.event_buffer.get(key)


def test_a_callback_runs_on_a_service_of_its_dag_and_is_reported(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stub = StubWorker(run(finished("success"))).start()
    try:
        configure(monkeypatch, tmp_path, url=stub.url)
        executor.start()
        callback = make_callback()
        callback.callback.data["dag_id"] = DAG_ID
        executor.queue_workload(callback, session=None)  # type: ignore[arg-type]

        state = run_until_reported(executor, callback.key)

        assert state == (CallbackState.SUCCESS, None)
        assert not executor.running
        assert stub.received[0].body["workload"]["type"] == "ExecuteCallback"
        assert stub.received[0].body["inline_xcoms"] == []
    finally:
        executor.end()
        stub.stop()


def test_a_callback_that_cannot_be_routed_fails_without_stopping_the_executor(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, tmp_path)
    monkeypatch.setenv(env_name("callback_service"), "no-such-service")
    executor.start()
    callback = make_callback()
    executor.queue_workload(callback, session=None)  # type: ignore[arg-type]

    state, info = run_until_reported(executor, callback.key)

    assert state == CallbackState.FAILED
    assert "no-such-service" in info and "callback_service" in info
    assert not executor.running


def test_a_connection_test_runs_on_the_configured_service(
    executor: KnativeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stub = StubWorker(run(finished("success"))).start()
    try:
        configure(monkeypatch, tmp_path, url=stub.url)
        monkeypatch.setenv(env_name("callback_service"), "svc")
        executor.start()
        test = make_connection_test()
        executor.queue_workload(test, session=None)  # type: ignore[arg-type]

        state = run_until_reported(executor, test.key)

        assert state is not None and state[0] == "success"
        assert stub.received[0].body["workload"]["connection_id"] == "my_postgres"
    finally:
        executor.end()
        stub.stop()
