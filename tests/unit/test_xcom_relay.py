"""The transport between Airflow's task supervisor and the Execution API that serves inline values.

``inner`` is an ``httpx.MockTransport`` standing in for the Execution API server,
which the end-to-end tests use for real. Requests are made through an
``httpx.Client`` with the relay as its transport, as the supervisor's client does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from airflow_knative.worker.xcom_relay import XComRelayTransport

DAG = "etl"
RUN = "manual__2025-01-01T00:00:00+00:00"
TI_ID = "0193a1c2-7c3e-7000-8000-000000000001"
API = "http://api-server:8080/execution/"


class FakeApi:
    """Records what reaches the Execution API and answers like it would."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET" and "/xcoms/" in request.url.path:
            return httpx.Response(200, json={"key": "return_value", "value": "from-api"})
        if request.method == "PATCH" and request.url.path.endswith("/run"):
            return httpx.Response(200, json={"dag_run": {}})
        return httpx.Response(204 if request.method == "PATCH" else 201)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def relay_client(api: FakeApi) -> Callable[..., tuple[httpx.Client, XComRelayTransport]]:
    def build(
        *,
        task_id: str = "transform",
        map_index: int = -1,
        run_id: str = RUN,
        inline: dict[tuple[str, int], Any] | None = None,
    ) -> tuple[httpx.Client, XComRelayTransport]:
        relay = XComRelayTransport(
            inner=httpx.MockTransport(api),
            dag_id=DAG,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            inline=inline or {},
        )
        return httpx.Client(base_url=API, transport=relay), relay

    return build


def xcom_path(task_id: str, key: str = "return_value", run_id: str = RUN) -> str:
    return f"xcoms/{DAG}/{run_id}/{task_id}/{key}"


def test_inline_value_is_served_without_calling_the_api(relay_client: Any, api: FakeApi) -> None:
    client, relay = relay_client(inline={("extract", -1): {"rows": [1, 2, 3]}})

    response = client.get(xcom_path("extract"))

    assert response.status_code == 200
    assert response.json() == {"key": "return_value", "value": {"rows": [1, 2, 3]}}
    assert api.requests == []
    assert (relay.record.reads_inline, relay.record.reads_api) == (1, 0)


def test_inline_none_is_a_value_too(relay_client: Any, api: FakeApi) -> None:
    client, _ = relay_client(inline={("extract", -1): None})

    assert client.get(xcom_path("extract")).json() == {"key": "return_value", "value": None}
    assert api.requests == []


def test_mapped_upstream_index_is_served_by_its_map_index(relay_client: Any, api: FakeApi) -> None:
    client, relay = relay_client(inline={("mapped", 0): "zero", ("mapped", 2): "two"})

    assert client.get(xcom_path("mapped"), params={"map_index": 2}).json()["value"] == "two"
    assert client.get(xcom_path("mapped"), params={"map_index": 0}).json()["value"] == "zero"
    assert api.requests == []

    assert client.get(xcom_path("mapped"), params={"map_index": 1}).json()["value"] == "from-api"
    assert len(api.requests) == 1
    assert (relay.record.reads_inline, relay.record.reads_api) == (2, 1)


def test_value_not_sent_inline_is_read_from_the_api(relay_client: Any, api: FakeApi) -> None:
    client, relay = relay_client(inline={("extract", -1): 1})

    response = client.get(xcom_path("other_upstream"))

    assert response.json() == {"key": "return_value", "value": "from-api"}
    assert [r.url.path for r in api.requests] == [f"/execution/{xcom_path('other_upstream')}"]
    assert (relay.record.reads_inline, relay.record.reads_api) == (0, 1)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (xcom_path("extract", key="custom_key"), {}),  # only return values travel inline
        (xcom_path("extract"), {"include_prior_dates": "true"}),  # other runs' values
        (xcom_path("extract", run_id="scheduled__other"), {}),  # another run
        (f"xcoms/other_dag/{RUN}/extract/return_value", {}),  # another DAG
    ],
)
def test_reads_that_are_not_this_runs_inline_return_values_go_to_the_api(
    relay_client: Any, api: FakeApi, path: str, params: dict[str, str]
) -> None:
    client, relay = relay_client(inline={("extract", -1): "inline"})

    response = client.get(path, params=params)

    assert response.json()["value"] == "from-api"
    assert len(api.requests) == 1
    assert relay.record.reads_inline == 0


@pytest.mark.parametrize(
    "suffix",
    ["item/0", "item/-1", "slice"],
)
def test_sequence_item_and_slice_reads_are_forwarded(relay_client: Any, api: FakeApi, suffix: str) -> None:
    client, relay = relay_client(inline={("mapped", -1): [1, 2, 3], ("mapped", 0): 1})

    client.get(f"{xcom_path('mapped')}/{suffix}", params={"start": 0} if suffix == "slice" else {})

    assert [r.url.path for r in api.requests] == [f"/execution/{xcom_path('mapped')}/{suffix}"]
    assert relay.record.reads_inline == 0


def test_url_encoded_run_id_still_matches(relay_client: Any, api: FakeApi) -> None:
    client, _ = relay_client(inline={("extract", -1): "inline"})
    encoded = f"xcoms/{DAG}/{quote(RUN, safe='')}/extract/return_value"
    assert "%2B" in encoded
    assert "%3A" in encoded

    response = client.get(encoded)

    assert response.json() == {"key": "return_value", "value": "inline"}
    assert api.requests == []


def test_head_of_an_inline_task_is_forwarded(relay_client: Any, api: FakeApi) -> None:
    """The count of mapped values comes from the API, even when some values travel inline."""
    client, _ = relay_client(inline={("mapped", 0): 1})

    client.head(xcom_path("mapped"))

    assert [r.method for r in api.requests] == ["HEAD"]


def test_own_return_value_is_recorded_and_still_stored_through_the_api(
    relay_client: Any, api: FakeApi
) -> None:
    client, relay = relay_client(task_id="transform")
    value = {"mean": 2.5, "n": [1, 2]}

    response = client.post(xcom_path("transform"), json=value)

    assert response.status_code == 201
    assert [(r.method, r.url.path) for r in api.requests] == [
        ("POST", f"/execution/{xcom_path('transform')}")
    ]
    assert json.loads(api.requests[0].content) == value
    assert relay.record.has_return_value
    assert relay.record.return_value == value


def test_own_return_value_of_a_mapped_task_needs_its_map_index(relay_client: Any, api: FakeApi) -> None:
    client, relay = relay_client(task_id="mapped", map_index=3)

    client.post(xcom_path("mapped"), params={"map_index": 2}, json="not mine")
    assert not relay.record.has_return_value

    client.post(xcom_path("mapped"), params={"map_index": 3}, json="mine")
    assert relay.record.has_return_value
    assert relay.record.return_value == "mine"
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (xcom_path("transform", key="other_key"), "custom xcom"),
        (xcom_path("upstream"), "another task's value"),
    ],
)
def test_other_xcom_writes_are_not_taken_for_the_return_value(
    relay_client: Any, api: FakeApi, path: str, value: str
) -> None:
    client, relay = relay_client(task_id="transform")

    client.post(path, json=value)

    assert not relay.record.has_return_value
    assert len(api.requests) == 1


def test_failed_store_is_not_recorded(relay_client: Any) -> None:
    relay = XComRelayTransport(
        inner=httpx.MockTransport(lambda request: httpx.Response(500)),
        dag_id=DAG,
        run_id=RUN,
        task_id="transform",
        map_index=-1,
        inline={},
    )
    client = httpx.Client(base_url=API, transport=relay)

    assert client.post(xcom_path("transform"), json=1).status_code == 500
    assert not relay.record.has_return_value


@pytest.mark.parametrize("state", ["success", "failed", "up_for_retry", "deferred"])
def test_patch_state_records_the_reported_state(relay_client: Any, api: FakeApi, state: str) -> None:
    client, relay = relay_client()

    client.patch(f"task-instances/{TI_ID}/state", json={"state": state, "end_date": "2025-01-01T00:00:01Z"})

    assert relay.record.state == state
    assert [r.method for r in api.requests] == ["PATCH"]


def test_patch_run_records_when_the_task_started(relay_client: Any, api: FakeApi) -> None:
    client, relay = relay_client()
    assert relay.record.started_at is None

    client.patch(f"task-instances/{TI_ID}/run", json={"state": "running"})

    assert relay.record.started_at is not None
    assert len(api.requests) == 1
    assert relay.record.state is None  # starting is not a final state


def test_close_leaves_the_shared_inner_transport_open() -> None:
    """The pool process's transport outlives each task's client (worker/api_transport.py)."""
    closed: list[bool] = []

    class Inner(httpx.MockTransport):
        def close(self) -> None:
            closed.append(True)

    relay = XComRelayTransport(
        inner=Inner(lambda r: httpx.Response(200)),
        dag_id=DAG,
        run_id=RUN,
        task_id="t",
        map_index=-1,
        inline={},
    )
    with httpx.Client(transport=relay, base_url="http://api.invalid/") as client:
        client.get("health")

    assert closed == []
