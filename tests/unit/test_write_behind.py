"""The task's first rendered-fields write goes out in the background; order and failures stay Airflow's.

Requests go through Airflow's own ``Client`` methods (``task_instances.set_rtif``,
``heartbeat``, ``xcoms.set``, ``finish``), as the supervisor makes them. An
``httpx.MockTransport`` stands in for the Execution API server (the end-to-end tests
run the real one); it can hold an answer back to show what waits for what.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from airflow.sdk.api.client import Client, ServerResponseError
from tenacity import stop_after_attempt, wait_none

from airflow_knative.worker.write_behind import WriteBehindClient

TI_ID = uuid.UUID("0193a1c2-7c3e-7000-8000-000000000001")
FIELDS = {"op_args": "[1, 2]", "op_kwargs": "{}"}


class SlowApi:
    """Answers every request; the rendered-fields write waits until :attr:`release` is set."""

    def __init__(self, rtif_status: int = 201) -> None:
        self.rtif_status = rtif_status
        self.release = threading.Event()
        self.rtif_received = threading.Event()
        #: How many rendered-fields writes lose their connection before one is answered.
        self.cut_writes = 0
        self.log: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = f"{request.method} {request.url.path.rsplit('/', 1)[-1]}"
        self.log.append(f"> {name}")
        if request.url.path.endswith("/rtif"):
            self.rtif_received.set()
            if self.cut_writes > 0:
                self.cut_writes -= 1
                self.log.append(f"x {name}")
                raise httpx.RemoteProtocolError("connection cut", request=request)
            assert self.release.wait(10), "the test never released the rendered-fields write"
            self.log.append(f"< {name}")
            body = {"detail": "rejected"} if self.rtif_status >= 400 else {"message": "set"}
            return httpx.Response(self.rtif_status, json=body)
        self.log.append(f"< {name}")
        return httpx.Response(204 if request.method == "PATCH" else 201, json=None)


@pytest.fixture
def api() -> SlowApi:
    return SlowApi()


@pytest.fixture
def three_quick_attempts(monkeypatch: pytest.MonkeyPatch) -> int:
    """Airflow's retry policy for Execution API calls, with 3 attempts and no wait between them."""
    monkeypatch.setattr(Client.request.retry, "stop", stop_after_attempt(3))  # type: ignore[attr-defined]
    monkeypatch.setattr(Client.request.retry, "wait", wait_none())  # type: ignore[attr-defined]
    return 3


def _client(api: SlowApi) -> WriteBehindClient:
    return WriteBehindClient(
        base_url="http://api-server:8080/execution/", token="t", transport=httpx.MockTransport(api)
    )


@contextlib.contextmanager
def _after_answered_write(api: SlowApi, status: int) -> Iterator[WriteBehindClient]:
    """A client that sent its rendered-fields write, which the API server answers at once with ``status``."""
    api.rtif_status = status
    api.release.set()
    with _client(api) as client:
        client.task_instances.set_rtif(TI_ID, FIELDS)
        yield client


@pytest.fixture
def client(api: SlowApi) -> Iterator[WriteBehindClient]:
    with _client(api) as built:
        yield built
    api.release.set()


def _heartbeat(client: WriteBehindClient) -> None:
    client.task_instances.heartbeat(TI_ID, pid=123)


def _push_xcom(client: WriteBehindClient) -> None:
    client.xcoms.set("etl", "run", "extract", "return_value", 3)


def _succeed(client: WriteBehindClient) -> None:
    client.task_instances.succeed(
        TI_ID, when=datetime.now(UTC), task_outlets=[], outlet_events=[], rendered_map_index=None
    )


def test_the_first_rendered_fields_write_does_not_wait_for_the_api_server(
    client: WriteBehindClient, api: SlowApi
) -> None:
    client.task_instances.set_rtif(TI_ID, FIELDS)  # returns before the server has answered
    # The write goes out from a thread, which may reach the server after set_rtif returned.
    assert api.rtif_received.wait(10), "the rendered-fields write never reached the API server"

    assert api.log == ["> PUT rtif"]  # received, still unanswered
    api.release.set()
    client.wait_for_pending_write()
    assert api.log == ["> PUT rtif", "< PUT rtif"]


def test_the_next_request_goes_out_only_after_the_write_was_answered(
    client: WriteBehindClient, api: SlowApi
) -> None:
    client.task_instances.set_rtif(TI_ID, FIELDS)
    pushed = threading.Thread(target=_push_xcom, args=(client,))
    pushed.start()
    pushed.join(0.3)
    assert pushed.is_alive(), "the XCom push went out while the rendered-fields write was unanswered"

    api.release.set()
    pushed.join(10)

    assert [line for line in api.log if line.startswith(">")] == ["> PUT rtif", "> POST return_value"]
    assert api.log.index("< PUT rtif") < api.log.index("> POST return_value")


def test_a_failed_write_fails_the_tasks_next_request_and_only_that_one(api: SlowApi) -> None:
    with _after_answered_write(api, 422) as c:
        with pytest.raises(ServerResponseError) as failed:
            _push_xcom(c)
        _succeed(c)  # the terminal state is still reported

    assert failed.value.response.status_code == 422
    assert str(failed.value.request.url).endswith(f"/task-instances/{TI_ID}/rtif")
    assert "> POST return_value" not in api.log
    assert "> PATCH state" in api.log


def test_a_heartbeat_leaves_the_failure_to_the_tasks_own_request(api: SlowApi) -> None:
    with _after_answered_write(api, 422) as c:
        _heartbeat(c)

        with pytest.raises(ServerResponseError):
            _succeed(c)


def test_a_cut_connection_is_retried_by_airflows_own_policy(api: SlowApi, three_quick_attempts: int) -> None:
    api.cut_writes = three_quick_attempts - 1
    with _after_answered_write(api, 201) as c:
        _push_xcom(c)  # no error: the last attempt was answered

    assert [line for line in api.log if line.endswith("PUT rtif")] == [
        "> PUT rtif",
        "x PUT rtif",
        "> PUT rtif",
        "x PUT rtif",
        "> PUT rtif",
        "< PUT rtif",
    ]
    assert api.log.index("< PUT rtif") < api.log.index("> POST return_value")


def test_a_connection_cut_on_every_attempt_fails_the_tasks_next_request(
    api: SlowApi, three_quick_attempts: int
) -> None:
    api.cut_writes = three_quick_attempts
    with _after_answered_write(api, 201) as c:
        _heartbeat(c)  # the heartbeat still goes out, after the last attempt
        with pytest.raises(httpx.RemoteProtocolError):
            _push_xcom(c)

    assert api.log.count("x PUT rtif") == three_quick_attempts
    assert api.log.index("> PUT heartbeat") > api.log.index("x PUT rtif")
    assert "> POST return_value" not in api.log


def test_a_write_for_a_cleared_task_instance_is_skipped_as_airflow_skips_it(api: SlowApi) -> None:
    with _after_answered_write(api, 410) as c:
        _push_xcom(c)

    assert "> POST return_value" in api.log


def test_later_rendered_fields_writes_go_out_in_line(client: WriteBehindClient, api: SlowApi) -> None:
    api.release.set()
    client.task_instances.set_rtif(TI_ID, FIELDS)
    client.wait_for_pending_write()
    api.release.clear()

    second = threading.Thread(target=client.task_instances.set_rtif, args=(TI_ID, FIELDS))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "the overwrite after execution did not wait for the API server"
    api.release.set()
    second.join(10)


def test_closing_waits_for_the_write(api: SlowApi) -> None:
    c = _client(api)
    c.task_instances.set_rtif(TI_ID, FIELDS)
    threading.Timer(0.2, api.release.set).start()

    c.close()

    assert api.log == ["> PUT rtif", "< PUT rtif"]
