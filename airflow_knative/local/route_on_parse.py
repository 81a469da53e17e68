"""Routes written as the DAG processor parses: a DAG is routed before Airflow can schedule it.

The local stack's DAG processor (and only it) loads this module as Airflow's
``dag_policy`` through an ``airflow_local_settings`` module on its ``PYTHONPATH``.
Airflow calls the policy for every DAG it parses, *before* it stores the DAG, so
by the time a new or changed DAG can be triggered its routes are in the table the
executor re-reads. No restart, and no window in which a run fails for want of a
route. A task with an invalid ``executor_config`` raises here, which Airflow shows
as the file's import error. Airflow re-parses every file every few seconds; a DAG
is routed again only when its tasks or services changed
(:func:`~airflow_knative.local.routing.route_parsed_dag`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_knative.inventory import dag_entries
from airflow_knative.local.routing import route_parsed_dag

#: Worker URLs (comma-separated) the DAG processor routes new services to; set only for it.
WORKER_URLS_ENV = "AIRFLOW_KNATIVE_LOCAL_WORKER_URLS"
ROUTING_FILE_ENV = "AIRFLOW__KNATIVE_EXECUTOR__ROUTING_FILE"

#: The module Airflow imports for cluster policies; the stack writes it into this folder.
SETTINGS_MODULE = "airflow_local_settings"
SETTINGS_SOURCE = (
    '"""Written by airflow-knative dev: route each DAG as the DAG processor parses it."""\n\n'
    "from airflow_knative.local.route_on_parse import dag_policy\n\n"
    '__all__ = ["dag_policy"]\n'
)


def dag_policy(dag: Any) -> None:
    """Airflow's cluster policy hook: make sure every task of ``dag`` has a route."""
    urls = [url for url in os.environ.get(WORKER_URLS_ENV, "").split(",") if url]
    routing_file = os.environ.get(ROUTING_FILE_ENV)
    if not urls or not routing_file:
        return
    route_parsed_dag(Path(routing_file), dag.dag_id, dag_entries(dag), urls)


def write_settings_module(folder: Path) -> Path:
    """Write the ``airflow_local_settings`` module into ``folder``; return the folder (for PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE)
    return folder
