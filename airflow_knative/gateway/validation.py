"""Validation of what a caller sends: the JSON body and the ``wait`` query parameter.

The body is read with a byte budget so that an oversized upload is refused
(413) without being held in memory, whether or not it declares its length.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from airflow_knative.gateway.errors import GatewayError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def too_large(max_bytes: int) -> GatewayError:
    """413 naming the limit, so the caller knows how far to shrink the input."""
    return GatewayError(
        413,
        f"request body is larger than {max_bytes} bytes; send a smaller input or raise "
        "--max-body-bytes (AIRFLOW_KNATIVE_GATEWAY_MAX_BODY_BYTES)",
        extra={"max_body_bytes": max_bytes},
    )


def check_content_length(header: str | None, max_bytes: int) -> None:
    """Refuse at once a body that declares itself too large; a bad header is a 400."""
    if header is None:
        return
    try:
        length = int(header)
    except ValueError:
        raise GatewayError(400, f"Content-Length {header!r} is not a number") from None
    if length < 0:
        raise GatewayError(400, f"Content-Length {header!r} is negative")
    if length > max_bytes:
        raise too_large(max_bytes)


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """Collect the body, stopping with 413 as soon as it passes ``max_bytes``.

    Needed on top of :func:`check_content_length`: chunked uploads declare no length.
    """
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: Airflow would store them as invalid JSON in the run's conf."""
    raise ValueError(f"{name} is not allowed")


def parse_workflow_input(body: bytes) -> Any:
    """The ``input`` of a ``{"input": <any JSON>}`` body; anything else is a 400."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise GatewayError(400, 'request body is not UTF-8 text; send JSON like {"input": ...}') from None
    except (ValueError, RecursionError) as exc:
        raise GatewayError(400, f'request body is not valid JSON ({exc}); send {{"input": ...}}') from None
    if not isinstance(document, dict):
        raise GatewayError(
            400, f'request body must be a JSON object like {{"input": ...}}, got {type(document).__name__}'
        )
    if "input" not in document:
        raise GatewayError(400, 'request body has no "input" field; send {"input": <any JSON>}')
    return document["input"]


def parse_wait(value: str | None) -> bool:
    """``?wait=`` flag; absent means wait for the run. Unknown spellings are a 400, not a guess."""
    if value is None:
        return True
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise GatewayError(400, f"query parameter wait={value!r} must be true or false")
