"""Callbacks and connection tests: which service runs them.

Airflow 3.3's scheduler hands executor callbacks (deadline alerts) and the UI's
"Test connection" to the executor as ``ExecuteCallback`` and ``TestConnection``
workloads. They travel the same HTTP path as tasks, to one service:

* ``[knative_executor] callback_service`` when set (a name listed under
  ``services`` in the routing file);
* otherwise, for a callback, the service of its DAG's first task (that image has
  the DAG's code and dependencies, which the callback may import);
* otherwise the first service of the routing file, by name.
"""

from __future__ import annotations

from typing import Any

from airflow_knative.routing import RoutingError, RoutingTable


def callback_dag_id(workload: Any) -> str | None:
    """The DAG an ``ExecuteCallback`` belongs to (Airflow stores it in the callback's data)."""
    callback = getattr(workload, "callback", None)
    data = getattr(callback, "data", None) or {}
    dag_id = data.get("dag_id")
    return str(dag_id) if dag_id else None


def side_workload_service(table: RoutingTable, workload: Any, configured: str, where: str) -> str:
    """Name the service that runs a callback or connection test; raise RoutingError if there is none."""
    if configured:
        service = configured
    else:
        dag_id = callback_dag_id(workload)
        dag_tasks = table.tasks.get(dag_id, {}) if dag_id else {}
        if dag_tasks:
            service = dag_tasks[sorted(dag_tasks)[0]]
        elif table.services:
            service = sorted(table.services)[0]
        else:
            raise RoutingError(
                f"no service to run {type(workload).__name__} {workload.display_name}: routing file {where} "
                "lists no services; set [knative_executor] callback_service"
            )
    if service not in table.services:
        raise RoutingError(
            f"{type(workload).__name__} {workload.display_name} goes to service {service!r}, which routing "
            f"file {where} does not list under 'services': fix [knative_executor] callback_service"
        )
    return service


def side_workload_url(table: RoutingTable, workload: Any, configured: str, where: str) -> str:
    """The URL of :func:`side_workload_service`."""
    return table.services[side_workload_service(table, workload, configured, where)].url
