"""The local stack's routing table: every service of every DAG onto a few worker processes."""

from __future__ import annotations

from pathlib import Path

from airflow_knative.routing import RoutingTable, ServiceEntry, write_routing_table
from generator.inventory import TaskEntry


def build_local_routing(entries: list[TaskEntry], worker_urls: list[str]) -> RoutingTable:
    """Route each service (named by the shared rule) to a worker, spreading services round-robin."""
    services = sorted({entry.service for entry in entries})
    return RoutingTable(
        services={
            name: ServiceEntry(url=worker_urls[i % len(worker_urls)]) for i, name in enumerate(services)
        },
        tasks=_tasks_by_dag(entries),
    )


def _tasks_by_dag(entries: list[TaskEntry]) -> dict[str, dict[str, str]]:
    tasks: dict[str, dict[str, str]] = {}
    for entry in entries:
        tasks.setdefault(entry.dag_id, {})[entry.task_id] = entry.service
    return tasks


def write_local_routing(entries: list[TaskEntry], worker_urls: list[str], path: Path) -> RoutingTable:
    """Build and write the table; return it."""
    table = build_local_routing(entries, worker_urls)
    write_routing_table(table, path)
    return table
