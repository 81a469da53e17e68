"""An httpx transport between Airflow's task supervisor and the Execution API.

The supervisor talks to the Execution API through an ``httpx.Client``; this
transport sits under that client, so Airflow's own supervisor and task runner run
unchanged while the worker:

* answers XCom reads of upstream return values that arrived inline with the
  request, without a round trip to the API server (everything else, including
  mapped-sequence reads, goes to the API as usual);
* notes the task's own return value as it is stored (the store still goes to
  the API, so the UI and REST API see it), to hand it back to the executor;
* notes when the task process started and which state it reported.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

RETURN_VALUE_KEY = "return_value"


@dataclass
class RelayRecord:
    """What the relay saw while one task ran."""

    started_at: float | None = None
    state: str | None = None
    has_return_value: bool = False
    return_value: Any = None
    reads_inline: int = 0
    reads_api: int = 0


@dataclass
class XComRelayTransport(httpx.BaseTransport):
    """Serve inline upstream values; pass every other request to ``inner``."""

    inner: httpx.BaseTransport
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    inline: dict[tuple[str, int], Any]
    record: RelayRecord = field(default_factory=RelayRecord)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Route one Execution API request."""
        xcom = self._xcom_target(request)
        if xcom is not None and request.method == "GET":
            served = self._serve_inline(request, *xcom)
            if served is not None:
                return served
            self.record.reads_api += 1
        response = self.inner.handle_request(request)
        self._observe(request, response, xcom)
        return response

    def close(self) -> None:
        """Leave ``inner`` open: it is the pool process's shared transport (``api_transport``)."""

    def _xcom_target(self, request: httpx.Request) -> tuple[str, str] | None:
        """Return ``(task_id, key)`` when the request addresses an XCom of this run."""
        path = unquote(request.url.path)
        _, sep, rest = path.partition("/xcoms/")
        prefix = f"{self.dag_id}/{self.run_id}/"
        if not sep or not rest.startswith(prefix):
            return None
        parts = rest[len(prefix) :].split("/")
        if len(parts) != 2:  # item/<offset> and slice reads of mapped sequences
            return None
        return parts[0], parts[1]

    def _serve_inline(self, request: httpx.Request, task_id: str, key: str) -> httpx.Response | None:
        if key != RETURN_VALUE_KEY or "include_prior_dates" in request.url.params:
            return None
        map_index = int(request.url.params.get("map_index", -1))
        if (task_id, map_index) not in self.inline:
            return None
        self.record.reads_inline += 1
        body = {"key": key, "value": self.inline[(task_id, map_index)]}
        return httpx.Response(200, json=body, request=request)

    def _observe(
        self, request: httpx.Request, response: httpx.Response, xcom: tuple[str, str] | None
    ) -> None:
        if not response.is_success:
            return
        path = request.url.path
        if request.method == "PATCH" and path.endswith("/run"):
            self.record.started_at = time.time()
        elif request.method == "PATCH" and path.endswith("/state"):
            self.record.state = json.loads(request.content or b"{}").get("state")
        elif (
            request.method == "POST"
            and xcom == (self.task_id, RETURN_VALUE_KEY)
            and int(request.url.params.get("map_index", -1)) == self.map_index
        ):
            self.record.has_return_value = True
            self.record.return_value = json.loads(request.content or b"null")
