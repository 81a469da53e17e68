"""Task processes take the pydantic adapters their warm worker built, instead of building them per task."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from airflow.sdk.execution_time import comms, task_runner
from pydantic import JsonValue, TypeAdapter

from airflow_knative.worker import shared_type_adapters


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install for this test only: Airflow's modules and the shared adapters come back afterwards."""
    monkeypatch.setattr(comms, "TypeAdapter", comms.TypeAdapter)
    monkeypatch.setattr(task_runner, "TypeAdapter", task_runner.TypeAdapter)
    monkeypatch.setattr(shared_type_adapters, "_shared", {})
    shared_type_adapters.install()


@pytest.fixture
def channel() -> Iterator[socket.socket]:
    """The task process's end of its supervisor channel (a CommsDecoder reads fd 0 by default)."""
    ours, theirs = socket.socketpair()
    yield ours
    ours.close()
    theirs.close()


def _decoder(channel: socket.socket) -> comms.CommsDecoder:  # type: ignore[type-arg]
    return comms.CommsDecoder(log=None, socket=channel)


@pytest.mark.usefixtures("installed")
def test_every_comms_decoder_uses_the_adapter_built_once(channel: socket.socket) -> None:
    first = _decoder(channel)
    second = _decoder(channel)

    assert first.body_decoder is second.body_decoder
    assert first.err_decoder is first.body_decoder


@pytest.mark.usefixtures("installed")
def test_the_shared_adapter_still_decodes_the_supervisors_messages(channel: socket.socket) -> None:
    decoder = _decoder(channel).body_decoder

    message = decoder.validate_python({"type": "ErrorResponse", "error": "API_SERVER_ERROR", "detail": {}})

    assert type(message).__name__ == "ErrorResponse"


@pytest.mark.usefixtures("installed")
def test_rendered_fields_are_checked_with_the_shared_adapter_and_other_types_get_their_own() -> None:
    assert task_runner.TypeAdapter(JsonValue) is task_runner.TypeAdapter(JsonValue)
    assert task_runner.TypeAdapter(JsonValue).validate_python({"a": [1, "b"]}) == {"a": [1, "b"]}
    assert task_runner.TypeAdapter(list[int]) is not task_runner.TypeAdapter(list[int])
    assert task_runner.TypeAdapter(JsonValue, config=None) is not task_runner.TypeAdapter(JsonValue)


def test_without_install_airflow_builds_a_new_adapter_per_task(channel: socket.socket) -> None:
    # What install() saves: the stock modules build a fresh adapter each time.
    assert comms.TypeAdapter is TypeAdapter
    assert _decoder(channel).body_decoder is not _decoder(channel).body_decoder
