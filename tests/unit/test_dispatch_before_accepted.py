"""A stream that breaks before ``accepted`` is sent again; the log says which case it was.

Workers start a workload only once ``accepted`` is on the wire (see
tests/unit/test_worker_app.py), so a resend cannot run a task twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from starlette.responses import Response, StreamingResponse

from airflow_knative.protocol import STREAM_MEDIA_TYPE
from bench.workloads import WorkloadFactory
from tests.unit.stub_worker import Behaviour, StubWorker, accept_then_break, run
from tests.unit.test_dispatcher import Harness


def headers_then_break() -> Behaviour:
    """Answer 200, then drop the connection before the first event."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            raise ConnectionAbortedError("stub worker died before accepting")
            yield b""  # pragma: no cover  # makes this an async generator

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def test_break_before_accepted_is_resent_and_logged_as_before(
    harness: Harness,
    make_workload: WorkloadFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub = harness.stub(headers_then_break(), run())
    caplog.set_level(logging.INFO, logger="airflow_knative.executor")
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == "success"
    assert stub.posts == 2
    assert any("before 'accepted'" in r.getMessage() for r in caplog.records)


def test_break_after_accepted_is_logged_as_after(
    harness: Harness,
    make_workload: WorkloadFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub = harness.stub(accept_then_break(), run())
    caplog.set_level(logging.INFO, logger="airflow_knative.executor")
    harness.dispatcher(stub.url).submit(make_workload())

    outcome = harness.outcome()

    assert outcome.state == "lost"
    time.sleep(0.2)  # a wrong resend would arrive now
    assert stub.posts == 1
    assert any("after 'accepted'" in r.getMessage() for r in caplog.records)
