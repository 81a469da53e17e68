"""Request validation: body size, JSON shape and the wait flag."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from airflow_knative.gateway.errors import GatewayError
from airflow_knative.gateway.validation import (
    check_content_length,
    parse_wait,
    parse_workflow_input,
    read_limited,
)


def status_of(exc: pytest.ExceptionInfo[GatewayError]) -> int:
    return exc.value.status


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"input": [1, 2, 3, 4]}', [1, 2, 3, 4]),
        (b'{"input": null}', None),
        (b'{"input": {"a": "\xc3\xa9"}, "extra": 1}', {"a": "é"}),
        (b'{"input": "text"}', "text"),
    ],
)
def test_input_is_any_json(body: bytes, expected: object) -> None:
    assert parse_workflow_input(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"input"', "must be a JSON object"),
        (b'{"data": [1]}', 'no "input" field'),
        (b'{"input": NaN}', "NaN is not allowed"),
        (b'{"input": Infinity}', "not allowed"),
        (b"\xff\xfe\xfa", "not"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_bad_bodies_are_400(body: bytes, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as exc:
        parse_workflow_input(body)
    assert status_of(exc) == 400
    assert exc.value.body()["error"]


def test_declared_length_over_the_limit_is_413() -> None:
    with pytest.raises(GatewayError) as exc:
        check_content_length("11", 10)
    assert status_of(exc) == 413
    assert exc.value.body()["max_body_bytes"] == 10


@pytest.mark.parametrize("header", [None, "0", "10"])
def test_declared_length_within_the_limit_passes(header: str | None) -> None:
    check_content_length(header, 10)


@pytest.mark.parametrize("header", ["ten", "-1"])
def test_bad_content_length_is_400(header: str) -> None:
    with pytest.raises(GatewayError) as exc:
        check_content_length(header, 10)
    assert status_of(exc) == 400


async def test_reading_stops_past_the_limit() -> None:
    with pytest.raises(GatewayError) as exc:
        await read_limited(chunks(b"12345", b"67890", b"1"), 10)
    assert status_of(exc) == 413


async def test_reading_up_to_the_limit_returns_the_body() -> None:
    assert await read_limited(chunks(b"12345", b"", b"67890"), 10) == b"1234567890"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("true", True), ("1", True), ("False", False), ("0", False), (" no ", False)],
)
def test_wait_flag(value: str | None, expected: bool) -> None:
    assert parse_wait(value) is expected


def test_unknown_wait_flag_is_400() -> None:
    with pytest.raises(GatewayError) as exc:
        parse_wait("maybe")
    assert status_of(exc) == 400
