"""The routing table: which service serves a task, and where that service listens.

File format (YAML or JSON; the chart renders it into a ConfigMap, the local stack
writes it for its worker processes)::

    services:
      compute-avg-distributed-extract-abcd1234:
        url: http://compute-avg-distributed-extract-abcd1234.airflow.svc.cluster.local
    tasks:
      compute_avg_distributed:
        extract: compute-avg-distributed-extract-abcd1234

A task may also name a service itself with ``executor_config={"knative": {"service": ...}}``;
that service must still be listed under ``services``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_knative.task_config import parse_task_config

log = logging.getLogger("airflow_knative.routing")


class ServiceEntry(BaseModel):
    """Where one service listens."""

    model_config = ConfigDict(extra="forbid")

    url: str


class RoutingTable(BaseModel):
    """The parsed routing file."""

    model_config = ConfigDict(extra="forbid")

    services: dict[str, ServiceEntry] = {}
    tasks: dict[str, dict[str, str]] = {}

    def to_document(self) -> dict[str, Any]:
        """Return the plain data written to a routing file."""
        return self.model_dump(mode="json")


class RoutingError(LookupError):
    """A task cannot be routed; the message names the task and the routing file."""


class RoutingFileError(ValueError):
    """The routing file is missing or malformed."""


def load_routing_table(path: Path) -> RoutingTable:
    """Parse the routing file at ``path``, naming the file in every error."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise RoutingFileError(
            f"routing file {path} does not exist: set [knative_executor] routing_file "
            "to the table the chart or `airflow-knative dev` writes"
        ) from exc
    except yaml.YAMLError as exc:
        raise RoutingFileError(f"routing file {path} is not valid YAML/JSON: {exc}") from exc
    try:
        return RoutingTable.model_validate(data)
    except ValidationError as exc:
        raise RoutingFileError(f"routing file {path} is malformed: {exc}") from exc


def write_routing_table(table: RoutingTable, path: Path) -> None:
    """Write ``table`` atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(table.to_document(), sort_keys=True))
    os.replace(tmp, path)


@dataclass
class Router:
    """Resolves tasks to service URLs, re-reading the routing file when it changes.

    In a cluster the file is a mounted ConfigMap, which Kubernetes updates in
    place: re-reading on a changed modification time picks up newly generated
    services without restarting the scheduler.

    Only the first load may fail (the scheduler then stops with the error at
    start-up). Once a table has loaded, a file that turns missing or malformed
    is logged as an error and the last good table stays in use, so a bad
    ConfigMap edit cannot fail running or new tasks. The dispatcher calls
    :meth:`changed` (a ``stat``) on its event loop and :meth:`refresh` (the
    parse) in a thread; lookups only read the table in memory.
    """

    path: Path
    _table: RoutingTable | None = None
    _mtime_ns: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _current_mtime(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return -2

    def changed(self) -> bool:
        """True when the file's modification time differs from the last one read (good or bad)."""
        return self._current_mtime() != self._mtime_ns

    def refresh(self) -> RoutingTable:
        """Reload the file if it changed; keep the last good table when it became invalid.

        Raises :class:`RoutingFileError` only while no table has loaded yet.
        """
        with self._lock:
            mtime = self._current_mtime()
            if mtime == self._mtime_ns and self._table is not None:
                return self._table
            try:
                table = load_routing_table(self.path)
            except RoutingFileError as exc:
                if self._table is None:
                    raise
                if mtime != self._mtime_ns:
                    log.error("%s; still routing with the last good table until the file is fixed", exc)
                    self._mtime_ns = mtime  # log once per change, not once per task
                return self._table
            if self._table is not None:
                log.info("routing file %s reloaded: %d task route(s)", self.path, _route_count(table))
            self._table, self._mtime_ns = table, mtime
            return table

    def table(self) -> RoutingTable:
        """Return the current table, reloading it first if the file changed."""
        if self._table is None or self.changed():
            return self.refresh()
        return self._table

    def current(self) -> RoutingTable:
        """Return the table in memory without looking at the file (loads it on first use)."""
        return self._table if self._table is not None else self.refresh()

    def service_for(self, dag_id: str, task_id: str, executor_config: dict[str, Any] | None) -> str:
        """Return the name of the service that serves the task."""
        return self._service_in(self.table(), dag_id, task_id, executor_config)

    def url_for(
        self, dag_id: str, task_id: str, executor_config: dict[str, Any] | None, *, reload: bool = True
    ) -> str:
        """Return the URL of the service that serves the task.

        With ``reload=False`` the table in memory is used as is (the dispatcher
        refreshes it off its event loop first).
        """
        table = self.table() if reload else self.current()
        service = self._service_in(table, dag_id, task_id, executor_config)
        entry = table.services.get(service)
        if entry is None:
            raise RoutingError(
                f"dag_id={dag_id!r} task_id={task_id!r} is served by {service!r}, "
                f"which routing file {self.path} does not list under 'services'"
            )
        return entry.url

    def _service_in(
        self, table: RoutingTable, dag_id: str, task_id: str, executor_config: dict[str, Any] | None
    ) -> str:
        override = parse_task_config(executor_config, where=f"{dag_id}.{task_id}").service
        if override:
            return override
        service = table.tasks.get(dag_id, {}).get(task_id)
        if service is None:
            raise RoutingError(
                f"no route for dag_id={dag_id!r} task_id={task_id!r} in routing file {self.path}: "
                "run `make generate` and upgrade the release (or restart `make run`), "
                'or set executor_config={"knative": {"service": ...}} on the task'
            )
        return service


def _route_count(table: RoutingTable) -> int:
    return sum(len(tasks) for tasks in table.tasks.values())
