"""The pool process counts a task's ``PATCH /run`` as its first heartbeat.

Real Airflow supervisor class; its ``_on_child_started`` (which would fork-talk to a
task process and call the Execution API) is replaced by a stand-in that does what
Airflow's does to the heartbeat clocks, and the Execution API client is a recorder.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.execution_time.supervisor import ActivitySubprocess

from airflow_knative.worker.start_heartbeat import install_start_counts_as_heartbeat


class RecordingTaskInstances:
    def __init__(self) -> None:
        self.heartbeats: list[Any] = []

    def heartbeat(self, ti_id: Any, pid: int) -> None:
        self.heartbeats.append(ti_id)


def _started_supervisor() -> tuple[ActivitySubprocess, RecordingTaskInstances]:
    """An ActivitySubprocess just past ``_on_child_started``, as the supervisor loop first sees it."""
    supervisor = object.__new__(ActivitySubprocess)
    recorder = RecordingTaskInstances()
    supervisor._last_heartbeat_attempt = 0
    supervisor._last_successful_heartbeat = 0
    supervisor._terminal_state = None
    supervisor.failed_heartbeats = 0
    supervisor.id = "ti-1"
    supervisor._process = SimpleNamespace(pid=4242)
    supervisor.client = SimpleNamespace(task_instances=recorder)
    supervisor._on_child_started(ti=None, dag_rel_path="dag.py", bundle_info=None, sentry_integration="")
    return supervisor, recorder


@pytest.fixture
def stock_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's start, minus the process and the API: the successful start sets the success clock."""

    def on_child_started(self: Any, **kwargs: Any) -> None:
        self._last_successful_heartbeat = time.monotonic()

    monkeypatch.setattr(ActivitySubprocess, "_on_child_started", on_child_started)


@pytest.mark.usefixtures("stock_start")
def test_stock_supervisor_heartbeats_right_after_the_start() -> None:
    supervisor, recorder = _started_supervisor()
    supervisor._send_heartbeat_if_needed()
    assert recorder.heartbeats == ["ti-1"], "the redundant heartbeat this module removes"


@pytest.mark.usefixtures("stock_start")
def test_the_start_counts_as_the_first_heartbeat() -> None:
    assert install_start_counts_as_heartbeat()
    supervisor, recorder = _started_supervisor()
    supervisor._send_heartbeat_if_needed()
    assert recorder.heartbeats == []
    assert supervisor._last_heartbeat_attempt == supervisor._last_successful_heartbeat > 0


@pytest.mark.usefixtures("stock_start")
def test_heartbeats_resume_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    install_start_counts_as_heartbeat()
    supervisor, recorder = _started_supervisor()
    later = time.monotonic() + 3600
    monkeypatch.setattr("airflow.sdk.execution_time.supervisor.time.monotonic", lambda: later)
    supervisor._send_heartbeat_if_needed()
    assert recorder.heartbeats == ["ti-1"]


@pytest.mark.usefixtures("stock_start")
def test_installing_twice_wraps_once() -> None:
    install_start_counts_as_heartbeat()
    wrapped = ActivitySubprocess._on_child_started
    install_start_counts_as_heartbeat()
    assert ActivitySubprocess._on_child_started is wrapped
