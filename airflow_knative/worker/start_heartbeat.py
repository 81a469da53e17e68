"""Count a task's ``PATCH /run`` as its first heartbeat.

Airflow's supervisor sends ``PUT /heartbeat`` on the first turn of its loop, a few
milliseconds after ``PATCH /run``, because its "last attempt" clock starts at zero.
The API server already set ``last_heartbeat_at`` when it answered ``PATCH /run``, so
that heartbeat tells it nothing; but the supervisor's loop is single-threaded, and
while it waits for the answer (10-20 ms on a busy API server) the task's own first
requests to its supervisor (rendered fields, XCom reads) wait behind it.

Installed in each pool process, before any task is forked, this starts the clock at
the successful start instead: the next heartbeat goes out one
``MIN_HEARTBEAT_INTERVAL`` later, as every later one does. Timeout detection is
unchanged (it reads the last *successful* heartbeat, which the start already set).
If a future Airflow renames the attributes, nothing is patched and the supervisor
behaves as stock.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger("airflow_knative.worker.start_heartbeat")


def install_start_counts_as_heartbeat() -> bool:
    """Wrap ``ActivitySubprocess._on_child_started``; return whether it was installed."""
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    original = getattr(ActivitySubprocess, "_on_child_started", None)
    fields = {field.name for field in getattr(ActivitySubprocess, "__attrs_attrs__", ())}
    if original is None or not {"_last_heartbeat_attempt", "_last_successful_heartbeat"} <= fields:
        log.info("Airflow's supervisor changed; the first heartbeat after start stays as stock")
        return False
    if getattr(original, "_start_counts_as_heartbeat", False):
        return True

    @functools.wraps(original)
    def on_child_started(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._last_heartbeat_attempt = self._last_successful_heartbeat

    on_child_started._start_counts_as_heartbeat = True  # type: ignore[attr-defined]
    ActivitySubprocess._on_child_started = on_child_started  # type: ignore[method-assign]
    return True
