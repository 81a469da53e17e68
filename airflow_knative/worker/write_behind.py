"""Airflow's Execution API client, with the task's first rendered-fields write sent in the background.

Before a task's code runs, Airflow's task runner renders the templated fields and
has its supervisor store them (``PUT /task-instances/{id}/rtif``), waiting for the
answer: one API round trip (11-18 ms on an idle API server, more on a busy one) on
the path from "request received" to "first line of task code", on every task.
Nothing the task does depends on that answer; the fields are what the UI shows.

:class:`WriteBehindClient` answers that first write at once and sends it from a
thread, with Airflow's own retries, while the task code starts. Order and outcome
stay Airflow's:

* every later request of the task (heartbeat, XCom push, state) waits until the
  write has been answered, so the API server sees the same calls in the same order;
* a write that failed for good makes the task's next request other than a heartbeat
  (its XCom push or its state) raise the same error, so the task fails as it would
  in stock Airflow, where a failed write fails it before its code runs; the code has
  run by then, which is the one difference. Its terminal state is still reported
  (the request after the failed one goes out as usual). 410 (the task instance was
  cleared meanwhile) is skipped, as Airflow's supervisor skips it;
* later rendered-fields writes (``overwrite_rtif_after_execution``) go out in line;
* :meth:`close`, at the end of every task, waits for the write, so no thread is
  left behind when the pool process forks the next task.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from typing import Any

import httpx
from airflow.sdk.api.client import Client, ServerResponseError

from airflow_knative.events import log_event

log = logging.getLogger("airflow_knative.worker")

RTIF_SUFFIX = "/rtif"
HEARTBEAT_SUFFIX = "/heartbeat"


def _method_and_url(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, httpx.URL | str]:
    """The ``method`` and ``url`` of an httpx ``request(method, url, ...)`` call, by position or name."""
    method = args[0] if args else kwargs["method"]
    url = args[1] if len(args) > 1 else kwargs["url"]
    return str(method), url


def _is_put_to(suffix: str, method: str, url: httpx.URL | str) -> bool:
    return method.upper() == "PUT" and str(url).rstrip("/").endswith(suffix)


class WriteBehindClient(Client):
    """``airflow.sdk.api.client.Client`` whose first ``PUT .../rtif`` of a task does not block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred_sent = False
        self._pending: threading.Thread | None = None
        self._failure: BaseException | None = None

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # tenacity-wrapped
        """Send one Execution API request; the first rendered-fields write goes out in the background.

        Same signature as Airflow's ``Client.request`` (httpx's ``method, url, ...``).
        """
        method, url = _method_and_url(args, kwargs)
        # A heartbeat waits too (order), but leaves a failure to a request of the task itself.
        self.wait_for_pending_write(raise_failure=not _is_put_to(HEARTBEAT_SUFFIX, method, url))
        if self._deferred_sent or not _is_put_to(RTIF_SUFFIX, method, url):
            return super().request(*args, **kwargs)
        self._deferred_sent = True
        self._pending = threading.Thread(
            target=self._send_in_background, args=(args, kwargs), name="rtif-write-behind", daemon=True
        )
        self._pending.start()
        return httpx.Response(HTTPStatus.CREATED, json=None, request=self.build_request(method, url))

    def _send_in_background(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            super().request(*args, **kwargs)  # Airflow's retries apply
        except ServerResponseError as exc:
            if exc.response.status_code != HTTPStatus.GONE:
                self._failure = exc
        except BaseException as exc:  # raised again, in the task's own request, by wait_for_pending_write
            self._failure = exc
        if self._failure is not None:
            _, url = _method_and_url(args, kwargs)
            error = f"{type(self._failure).__name__}: {self._failure}"
            log_event(log, "rendered_fields_not_stored", url=str(url), error=error)

    def wait_for_pending_write(self, raise_failure: bool = True) -> None:
        """Wait for a write sent in the background; if it failed, raise its error (once)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.join()
        if raise_failure and self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def close(self) -> None:
        """Wait for the background write (a failure was logged when it happened), then close."""
        self.wait_for_pending_write(raise_failure=False)
        super().close()
