"""The executor's metrics, sent through Airflow's own stats client (StatsD, Datadog or OpenTelemetry).

Airflow's ``[metrics]`` section decides where they go: ``statsd_on``,
``statsd_host``, ``statsd_port``, ``statsd_prefix`` (default ``airflow``) and
``metrics_allow_list`` apply as to the scheduler's own metrics. Every name here
starts with ``knative_executor.``; docs/metrics.md lists them.

The stats module is the one :class:`~airflow.executors.base_executor.BaseExecutor`
initialises in the scheduler process (``airflow._shared.observability.metrics.stats``).
``airflow.stats.Stats`` is a deprecated shim over the Task SDK's separate copy,
which nothing initialises in the scheduler, so metrics sent through it would be
dropped there.

A metric must never stop a task: every call swallows and logs its error.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "knative_executor"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]+")


def _stats() -> Any:
    from airflow._shared.observability.metrics import stats

    return stats


def metric_part(text: str) -> str:
    """``text`` as one dotted-name segment (``HTTP 503`` -> ``http_503``)."""
    return _UNSAFE.sub("_", text).strip("_").lower() or "unknown"


class ExecutorMetrics:
    """Named metrics of one executor instance; with multi-team, each carries a ``team_name`` tag."""

    def __init__(self, team_name: str | None = None) -> None:
        self._tags = {"team_name": team_name} if team_name else {}

    def _send(self, kind: str, name: str, value: Any) -> None:
        try:
            getattr(_stats(), kind)(f"{PREFIX}.{name}", value, tags=self._tags or None)
        except Exception:  # a metrics backend problem must not fail a dispatch
            log.debug("could not send metric %s.%s", PREFIX, name, exc_info=True)

    def dispatch_latency(self, seconds: float) -> None:
        """From the dispatcher taking a task up to the worker's ``accepted`` (retries included)."""
        self._send("timing", "dispatch_latency", timedelta(seconds=max(0.0, seconds)))

    def retry(self, cause: str) -> None:
        """A workload sent again because the worker did not take it (``cause``: why not)."""
        self._send("incr", f"dispatch_retries.{metric_part(cause)}", 1)
        self._send("incr", "dispatch_retries", 1)

    def tasks_in_flight(self, streaming: int, watched: int) -> None:
        """Tasks whose stream is open, and tasks watched in the database (adopted or lost streams)."""
        self._send("gauge", "tasks_in_flight", streaming)
        self._send("gauge", "tasks_watched", watched)

    def inline(self, hits: int, misses: int) -> None:
        """Upstream values sent inline with a task (hits), and those left to the XCom API (misses)."""
        if hits:
            self._send("incr", "inline_values.hits", hits)
        if misses:
            self._send("incr", "inline_values.misses", misses)

    def stream_lost(self) -> None:
        """A stream broke after ``accepted``; the task is watched in the database from then on."""
        self._send("incr", "streams_lost", 1)

    def adopted(self, running: int, reset: int) -> None:
        """Task instances taken over from a stopped scheduler (running) or handed back to be reset."""
        if running:
            self._send("incr", "tasks_adopted", running)
        if reset:
            self._send("incr", "tasks_not_adopted", reset)

    def outcome(self, state: str) -> None:
        """A task's dispatch ended: ``success``, ``failed`` or ``lost``."""
        self._send("incr", f"tasks_finished.{metric_part(state)}", 1)

    def not_run(self, reason: str) -> None:
        """A task no worker ran; ``reason``: routing, rejected, accept_timeout, not_accepted, error."""
        self._send("incr", f"tasks_not_run.{metric_part(reason)}", 1)
