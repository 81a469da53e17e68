"""Follow the DAG folder as Airflow sees it, and tell the user what changed.

Every few seconds the monitor reads Airflow's DAG list and import errors (the same
ones the UI shows) and reports DAGs that appeared or disappeared and files that
stopped or started importing. Routes of a DAG that disappeared are dropped;
routes of new and changed DAGs are written by the DAG processor itself
(:mod:`airflow_knative.local.route_on_parse`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.config import StackConfig
from airflow_knative.local.routing import update_routing_file, without_dags
from airflow_knative.routing import RoutingTable

POLL_INTERVAL = 2.0


def error_summary(stack_trace: str) -> str:
    """The line of an import error that says what is wrong (the last non-empty one)."""
    lines = [line.strip() for line in stack_trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def describe_import_error(filename: str, stack_trace: str) -> str:
    """One line per broken file, as the stack prints it."""
    return f"DAG file {filename} does not import: {error_summary(stack_trace)}"


class DagMonitor:
    """Polls Airflow in a background thread; ``report`` receives one line per change."""

    def __init__(
        self,
        config: StackConfig,
        report: Callable[[str], None],
        dag_ids: set[str],
        import_errors: dict[str, str],
    ) -> None:
        self.config = config
        self.report = report
        self.dag_ids = set(dag_ids)
        self.import_errors = dict(import_errors)
        self._gone: set[str] = set()
        self._last_problem = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dag-monitor", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        config = self.config
        api: AirflowClient | None = None
        while not self._stop.wait(POLL_INTERVAL):
            try:
                api = api or AirflowClient(config.api_url, config.admin_user, config.admin_password)
                self.check(api)
            except httpx.HTTPError:  # Airflow busy or stopping: try again next round
                if api is not None:
                    api.close()
                api = None
            except Exception as exc:  # e.g. a routing file broken by hand: say so once, keep following
                problem = f"DAG monitor: {type(exc).__name__}: {exc} (retrying every {POLL_INTERVAL:g} s)"
                if problem != self._last_problem:
                    self.report(problem)
                self._last_problem = problem
            else:
                self._last_problem = ""
        if api is not None:
            api.close()

    def check(self, api: AirflowClient) -> None:
        """One round: compare Airflow's DAGs and import errors with the last round's."""
        routing_file = self.config.routing_file
        routed_at = _mtime(routing_file)
        errors = api.import_errors()
        dag_ids = api.dag_ids()
        for filename, trace in sorted(errors.items()):
            if self.import_errors.get(filename) != trace:
                self.report(describe_import_error(filename, trace) + " (the stack runs without it)")
        for filename in sorted(self.import_errors.keys() - errors.keys()):
            self.report(f"DAG file {filename} imports again")
        for dag_id in sorted(dag_ids - self.dag_ids):
            self.report(f"DAG {dag_id} is ready: POST {self.config.gateway_url}/runWorkflow/{dag_id}")
        for dag_id in sorted(self.dag_ids - dag_ids):
            self.report(f"DAG {dag_id} is gone from Airflow; its routes are removed")
        self._gone = (self._gone | (self.dag_ids - dag_ids)) - dag_ids
        self.dag_ids, self.import_errors = dag_ids, errors
        if self._gone and routing_file.exists():
            self._drop_routes(routing_file, routed_at)

    def _drop_routes(self, routing_file: Path, routed_at: int) -> None:
        """Drop the routes of DAGs seen gone, unless the DAG processor wrote the file meanwhile.

        A write since this round's read may be the same DAG coming back; dropping its
        routes then would leave it unrouted, so the drop waits for the next round.
        """
        applied = False

        def drop(table: RoutingTable) -> RoutingTable:
            nonlocal applied
            if _mtime(routing_file) != routed_at:
                return table
            applied = True
            return without_dags(table, self._gone)

        update_routing_file(routing_file, drop)
        if applied:
            self._gone = set()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return -1
