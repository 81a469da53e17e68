"""The local stack's routing table: every service of every DAG onto a few worker processes.

Written whole at start-up from the DAG folder, then kept current while the stack
runs: the DAG processor adds a DAG's routes as it parses the file (see
:mod:`airflow_knative.local.route_on_parse`), and the DAG monitor drops the routes of
DAGs that are gone. Every change is a read-modify-write under one file lock, so
those processes never undo each other's changes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow_knative.inventory import TaskEntry
from airflow_knative.routing import RoutingTable, ServiceEntry, load_routing_table, write_routing_table


def build_local_routing(entries: list[TaskEntry], worker_urls: list[str]) -> RoutingTable:
    """Route each service (named by the shared rule) to a worker, spreading services round-robin.

    The local table lists every task explicitly (no ``dags`` rule section): it is small,
    and the DAG processor and DAG monitor edit it DAG by DAG (:func:`with_dag`).
    """
    services = sorted({entry.service for entry in entries})
    return RoutingTable(
        services={
            name: ServiceEntry(url=worker_urls[i % len(worker_urls)]) for i, name in enumerate(services)
        },
        tasks=_tasks_by_dag(entries),
    )


def build_activator_routing(entries: list[TaskEntry], activator_url: str) -> RoutingTable:
    """Every service behind the activator (scale to zero): one URL template, no service listed."""
    return RoutingTable(
        url_template=f"{activator_url.rstrip('/')}/services/{{service}}", tasks=_tasks_by_dag(entries)
    )


def _tasks_by_dag(entries: Iterable[TaskEntry]) -> dict[str, dict[str, str]]:
    tasks: dict[str, dict[str, str]] = {}
    for entry in entries:
        tasks.setdefault(entry.dag_id, {})[entry.task_id] = entry.service
    return tasks


def write_local_routing(entries: list[TaskEntry], worker_urls: list[str], path: Path) -> RoutingTable:
    """Build and write the whole table at start-up (forgetting which DAGs were routed on parse)."""
    table = build_local_routing(entries, worker_urls)
    with _locked(path):
        write_routing_table(table, path)
        _parsed_file(path).unlink(missing_ok=True)
    return table


def write_activator_routing(entries: list[TaskEntry], activator_url: str, path: Path) -> RoutingTable:
    """Like :func:`write_local_routing`, for a stack whose workers sit behind the activator."""
    table = build_activator_routing(entries, activator_url)
    with _locked(path):
        write_routing_table(table, path)
        _parsed_file(path).unlink(missing_ok=True)
    return table


def route_parsed_dag(path: Path, dag_id: str, entries: list[TaskEntry], worker_urls: list[str]) -> bool:
    """Route a DAG the DAG processor parsed, once per set of (task, service); True if the file changed.

    Airflow re-parses every file every few seconds. Only a DAG that is new, or whose
    tasks or services changed, is routed again: a route someone removed from the
    file by hand stays removed until the DAG itself changes.
    """
    fingerprint = json.dumps(sorted((entry.task_id, entry.service) for entry in entries))
    with _locked(path):
        parsed = _read_parsed(path)
        if parsed.get(dag_id) == fingerprint and path.exists():
            return False
        current = load_routing_table(path) if path.exists() else RoutingTable()
        updated = with_dag(current, dag_id, entries, worker_urls)
        if updated != current:
            write_routing_table(updated, path)
        _write_parsed(path, {**parsed, dag_id: fingerprint})
        return updated != current


def with_dag(
    table: RoutingTable, dag_id: str, entries: list[TaskEntry], worker_urls: list[str]
) -> RoutingTable:
    """``table`` with routes for ``entries`` of ``dag_id``; new services go to the least busy worker.

    Routes of the DAG's earlier tasks stay: runs created from an earlier version of the
    DAG still schedule those tasks (Airflow keeps a run on its DAG version). They go
    when the DAG itself goes (:func:`without_dags`).
    """
    routes = {**table.tasks.get(dag_id, {}), **{entry.task_id: entry.service for entry in entries}}
    tasks = {**table.tasks, dag_id: routes}
    services = dict(table.services)
    if table.url_template is not None:  # behind the activator: the template reaches every service
        return _pruned(table.model_copy(update={"tasks": tasks}))
    load = Counter({url: 0 for url in worker_urls}) + Counter(entry.url for entry in services.values())
    for service in sorted({entry.service for entry in entries} - services.keys()):
        url = min(worker_urls, key=lambda candidate: (load[candidate], worker_urls.index(candidate)))
        services[service] = ServiceEntry(url=url)
        load[url] += 1
    return _pruned(table.model_copy(update={"services": services, "tasks": tasks}))


def without_dags(table: RoutingTable, dag_ids: Iterable[str]) -> RoutingTable:
    """``table`` without the routes of ``dag_ids`` (and the services nothing routes to any more)."""
    gone = set(dag_ids)
    tasks = {dag_id: routes for dag_id, routes in table.tasks.items() if dag_id not in gone}
    return _pruned(table.model_copy(update={"tasks": tasks}))


def _pruned(table: RoutingTable) -> RoutingTable:
    used = {service for routes in table.tasks.values() for service in routes.values()}
    return RoutingTable(
        url_template=table.url_template,
        services={name: entry for name, entry in table.services.items() if name in used},
        tasks=table.tasks,
    )


def update_routing_file(path: Path, change: Callable[[RoutingTable], RoutingTable]) -> bool:
    """Apply ``change`` to the file's table under the routing lock; write only if it changed.

    DAGs whose routes the change drops are forgotten as parsed, so their next parse routes them again.
    """
    with _locked(path):
        current = load_routing_table(path) if path.exists() else RoutingTable()
        updated = change(current)
        if updated == current:
            return False
        write_routing_table(updated, path)
        parsed = _read_parsed(path)
        if parsed.keys() - updated.tasks.keys():
            _write_parsed(path, {dag_id: fp for dag_id, fp in parsed.items() if dag_id in updated.tasks})
        return True


def _parsed_file(path: Path) -> Path:
    """Which DAGs the DAG processor routed, with what: kept beside the routing file."""
    return path.with_name(path.name + ".parsed.json")


def _read_parsed(path: Path) -> dict[str, str]:
    try:
        data = json.loads(_parsed_file(path).read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def _write_parsed(path: Path, parsed: dict[str, str]) -> None:
    target = _parsed_file(path)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(parsed, sort_keys=True))
    os.replace(tmp, target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock that serialises every writer of the routing file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
