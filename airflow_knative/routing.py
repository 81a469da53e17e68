"""The routing table: which service serves a task, and where that service listens.

File format (YAML or JSON; the chart renders it into a ConfigMap, the local stack
writes it for its worker processes)::

    url_template: http://{service}.airflow.svc.cluster.local
    dags:                       # tasks served by the naming rule's service
      compute_avg_distributed: [extract, compute_sum, compute_count, do_avg]
    tasks:                      # only tasks whose service is not the rule's
      compute_avg_distributed:
        extract: shared-etl
    services:                   # only services whose URL is not the template's
      shared-etl:
        url: http://shared-etl.etl.svc.cluster.local

A task listed under ``dags`` is served by ``airflow_knative.naming.service_name(dag_id,
task_id)`` (the rule the generator and the chart use), at ``url_template`` with
``{service}`` replaced. Only what differs from those rules is spelled out, so
10,000 tasks fit a ConfigMap (1 MiB) with room to spare: each task costs its id.
A task may also name a service itself with ``executor_config={"knative": {"service": ...}}``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from airflow_knative.naming import service_name
from airflow_knative.task_config import parse_task_config

log = logging.getLogger("airflow_knative.routing")

#: The placeholder ``url_template`` must contain.
SERVICE_PLACEHOLDER = "{service}"


class ServiceEntry(BaseModel):
    """Where one service listens."""

    model_config = ConfigDict(extra="forbid")

    url: str


class RoutingTable(BaseModel):
    """The parsed routing file."""

    model_config = ConfigDict(extra="forbid")

    _rule_tasks: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    url_template: str | None = None
    dags: dict[str, list[str]] = {}
    services: dict[str, ServiceEntry] = {}
    tasks: dict[str, dict[str, str]] = {}

    @field_validator("url_template")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and SERVICE_PLACEHOLDER not in value:
            raise ValueError(f"url_template {value!r} must contain {SERVICE_PLACEHOLDER}")
        return value

    @model_validator(mode="after")
    def _index_rule_tasks(self) -> RoutingTable:
        """Sets of task ids, so a lookup is O(1) however long a DAG's list is."""
        self._rule_tasks = {dag_id: frozenset(task_ids) for dag_id, task_ids in self.dags.items()}
        return self

    def to_document(self) -> dict[str, Any]:
        """Return the plain data written to a routing file (empty sections left out)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def service_of(self, dag_id: str, task_id: str) -> str | None:
        """The service of a task by this table (explicit entry first, then the naming rule)."""
        explicit = self.tasks.get(dag_id, {}).get(task_id)
        if explicit is not None:
            return explicit
        if task_id in self._rule_tasks.get(dag_id, ()):
            return service_name(dag_id, task_id)
        return None

    def tasks_of(self, dag_id: str) -> dict[str, str]:
        """``task_id -> service`` of every task of ``dag_id`` this table routes."""
        found = {task_id: service_name(dag_id, task_id) for task_id in self.dags.get(dag_id, ())}
        found.update(self.tasks.get(dag_id, {}))
        return found

    def known_services(self) -> list[str]:
        """Every service this table names or derives (listed, or serving a listed task), sorted."""
        known = set(self.services)
        for dag_id in set(self.dags) | set(self.tasks):
            known.update(self.tasks_of(dag_id).values())
        return sorted(known)

    def url_of(self, service: str) -> str | None:
        """Where ``service`` listens: its own entry, else the template."""
        entry = self.services.get(service)
        if entry is not None:
            return entry.url
        if self.url_template is not None:
            return self.url_template.replace(SERVICE_PLACEHOLDER, service)
        return None


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
        url = table.url_of(service)
        if url is None:
            raise RoutingError(
                f"dag_id={dag_id!r} task_id={task_id!r} is served by {service!r}, "
                f"which routing file {self.path} does not list under 'services' (and it has no "
                "'url_template')"
            )
        return url

    def _service_in(
        self, table: RoutingTable, dag_id: str, task_id: str, executor_config: dict[str, Any] | None
    ) -> str:
        override = parse_task_config(executor_config, where=f"{dag_id}.{task_id}").service
        if override:
            return override
        service = table.service_of(dag_id, task_id)
        if service is None:
            raise RoutingError(
                f"no route for dag_id={dag_id!r} task_id={task_id!r} in routing file {self.path}: "
                "run `make generate` and upgrade the release (or restart `make run`), "
                'or set executor_config={"knative": {"service": ...}} on the task'
            )
        return service


def _route_count(table: RoutingTable) -> int:
    return sum(len(tasks) for tasks in table.tasks.values())
