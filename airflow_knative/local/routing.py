"""The local stack's routing table: every service of every DAG onto a few worker processes."""

from __future__ import annotations

from pathlib import Path

from airflow_knative.naming import service_name
from airflow_knative.routing import RoutingTable, ServiceEntry, write_routing_table
from generator.inventory import TaskEntry


def build_local_routing(entries: list[TaskEntry], worker_urls: list[str]) -> RoutingTable:
    """Route each service (named by the shared rule) to a worker, spreading services round-robin."""
    services = sorted({entry.service for entry in entries})
    dags, tasks = _task_sections(entries)
    return RoutingTable(
        services={
            name: ServiceEntry(url=worker_urls[i % len(worker_urls)]) for i, name in enumerate(services)
        },
        dags=dags,
        tasks=tasks,
    )


def build_activator_routing(entries: list[TaskEntry], activator_url: str) -> RoutingTable:
    """Every service behind the activator (scale to zero): one URL template, no service listed."""
    dags, tasks = _task_sections(entries)
    return RoutingTable(
        url_template=f"{activator_url.rstrip('/')}/services/{{service}}", dags=dags, tasks=tasks
    )


def _task_sections(entries: list[TaskEntry]) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """``dags`` for tasks served by the naming rule's service, ``tasks`` for the others."""
    dags: dict[str, list[str]] = {}
    tasks: dict[str, dict[str, str]] = {}
    for entry in entries:
        if entry.service == service_name(entry.dag_id, entry.task_id):
            dags.setdefault(entry.dag_id, []).append(entry.task_id)
        else:
            tasks.setdefault(entry.dag_id, {})[entry.task_id] = entry.service
    return dags, tasks


def write_local_routing(entries: list[TaskEntry], worker_urls: list[str], path: Path) -> RoutingTable:
    """Build and write the table; return it."""
    table = build_local_routing(entries, worker_urls)
    write_routing_table(table, path)
    return table
