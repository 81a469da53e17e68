"""The local stack's start-up checks, live routing and monitor, each on its own (no Airflow running)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_knative.inventory import TaskEntry
from airflow_knative.local.config import StackConfig
from airflow_knative.local.dag_monitor import DagMonitor, error_summary
from airflow_knative.local.instance_lock import InstanceLock, StackAlreadyRunning
from airflow_knative.local.preflight import PortsUnavailable, check_ports
from airflow_knative.local.processes import log_size, log_tail
from airflow_knative.local.routing import (
    route_parsed_dag,
    update_routing_file,
    with_dag,
    without_dags,
    write_local_routing,
)
from airflow_knative.routing import RoutingTable, ServiceEntry, load_routing_table, write_routing_table
from airflow_knative.task_config import KnativeTaskConfig
from tests.conftest import free_port

WORKERS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]


def _config(home: Path, **ports: int) -> StackConfig:
    return StackConfig(
        home=home,
        dags_folder=home / "dags",
        database_url="sqlite://",
        executor="knative",
        workers=2,
        worker_concurrency=1,
        api_port=ports.get("api_port") or free_port(),
        gateway_port=ports.get("gateway_port") or free_port(),
        worker_base_port=ports.get("worker_base_port") or free_port(),
        admin_user="admin",
        admin_password="pw",
        parallelism=4,
    )


def _entry(dag_id: str, task_id: str, service: str | None = None) -> TaskEntry:
    return TaskEntry(
        dag_id=dag_id,
        task_id=task_id,
        service=service or f"{dag_id}-{task_id}".replace("_", "-"),
        config=KnativeTaskConfig(),
        execution_timeout_seconds=None,
        fileloc=f"/dags/{dag_id}.py",
    )


# ------------------------------------------------------------------ one stack per --home


def test_a_second_lock_on_the_same_home_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire({"ports": {"api-port": 8080, "gateway-port": 8000}})
    try:
        with pytest.raises(
            StackAlreadyRunning, match=rf"pid {os.getpid()}; api-port 8080, gateway-port 8000"
        ):
            InstanceLock(tmp_path).acquire({})
    finally:
        first.release()
    InstanceLock(tmp_path).acquire({})  # released: free again


def test_a_killed_stack_does_not_leave_its_home_locked(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from airflow_knative.local.instance_lock import InstanceLock
                lock = InstanceLock(Path({str(tmp_path)!r}))
                lock.acquire({{}})
                print("locked", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    with pytest.raises(StackAlreadyRunning):
        InstanceLock(tmp_path).acquire({})

    holder.send_signal(signal.SIGKILL)
    holder.wait(10)

    lock = InstanceLock(tmp_path)
    lock.acquire({})
    lock.release()


# ------------------------------------------------------------------ ports


def test_free_ports_pass(tmp_path: Path) -> None:
    check_ports(_config(tmp_path))


def test_busy_and_doubly_used_ports_are_named_with_their_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        worker_base = free_port()
        config = _config(tmp_path, api_port=port, gateway_port=worker_base + 1, worker_base_port=worker_base)
        with pytest.raises(PortsUnavailable) as raised:
            check_ports(config)
    message = str(raised.value)
    assert (
        f"port {port} (Airflow API server): change it with --api-port or AIRFLOW_KNATIVE_DEV_API_PORT"
        in message
    )
    assert f"port {worker_base + 1} (worker-1)" in message and "also used by gateway" in message
    assert "make run ARGS=" in message


# ------------------------------------------------------------------ this start's log lines


def test_log_tail_shows_only_lines_written_since_this_start(tmp_path: Path) -> None:
    log = tmp_path / "component.log"
    log.write_text("stale 1\nstale 2\n")
    since = log_size(log)
    with log.open("a") as handle:
        handle.write("fresh: address already in use\n")

    assert log_tail(log, since=since) == "fresh: address already in use"
    assert log_tail(tmp_path / "never-written.log", since=0) == "(no log)"
    assert log_tail(log, since=log_size(log)) == "(nothing written in this start)"


# ------------------------------------------------------------------ live routing


def test_a_new_dag_gets_routes_on_the_least_busy_worker() -> None:
    table = RoutingTable(services={"a-t": ServiceEntry(url=WORKERS[0])}, tasks={"a": {"t": "a-t"}})
    routed = with_dag(table, "b", [_entry("b", "x"), _entry("b", "y")], WORKERS)
    assert routed.tasks["b"] == {"x": "b-x", "y": "b-y"}
    assert routed.services["b-x"].url == WORKERS[1]
    assert routed.services["b-y"].url in WORKERS
    assert routed.tasks["a"] == {"t": "a-t"}


def test_a_changed_dag_keeps_earlier_routes_and_a_named_service_keeps_its_url() -> None:
    table = RoutingTable(
        services={"b-x": ServiceEntry(url=WORKERS[0]), "own": ServiceEntry(url="http://elsewhere")},
        tasks={"b": {"x": "b-x"}},
    )
    routed = with_dag(table, "b", [_entry("b", "renamed", service="own")], WORKERS)
    # Runs created from the DAG's earlier version still schedule "x".
    assert routed.tasks["b"] == {"x": "b-x", "renamed": "own"}
    assert routed.services["own"].url == "http://elsewhere"


def test_a_removed_dag_loses_its_routes_and_unused_services() -> None:
    table = with_dag(RoutingTable(), "a", [_entry("a", "t")], WORKERS)
    table = with_dag(table, "b", [_entry("b", "t", service="shared")], WORKERS)
    table = with_dag(table, "c", [_entry("c", "t", service="shared")], WORKERS)
    pruned = without_dags(table, ["a", "b"])
    assert set(pruned.tasks) == {"c"}
    assert set(pruned.services) == {"shared"}


def test_update_writes_only_when_the_table_changes(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    assert update_routing_file(path, lambda t: with_dag(t, "a", [_entry("a", "t")], WORKERS)) is True
    written = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert update_routing_file(path, lambda t: with_dag(t, "a", [_entry("a", "t")], WORKERS)) is False
    assert path.stat().st_mtime_ns == written
    assert load_routing_table(path).tasks == {"a": {"t": "a-t"}}


def test_a_parsed_dag_is_routed_once_per_version_of_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write_local_routing([], WORKERS, path)
    assert route_parsed_dag(path, "d", [_entry("d", "t")], WORKERS) is True
    assert route_parsed_dag(path, "d", [_entry("d", "t")], WORKERS) is False  # Airflow's periodic re-parse

    # A route removed by hand stays removed while the DAG's tasks stay the same ...
    table = load_routing_table(path)
    write_routing_table(RoutingTable(services=table.services, tasks={}), path)
    assert route_parsed_dag(path, "d", [_entry("d", "t")], WORKERS) is False
    assert "d" not in load_routing_table(path).tasks
    # ... and comes back when they change.
    assert route_parsed_dag(path, "d", [_entry("d", "t"), _entry("d", "u")], WORKERS) is True
    assert set(load_routing_table(path).tasks["d"]) == {"t", "u"}


def test_a_dag_whose_routes_were_dropped_is_routed_again_on_its_next_parse(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    route_parsed_dag(path, "d", [_entry("d", "t")], WORKERS)
    update_routing_file(path, lambda table: without_dags(table, ["d"]))  # the monitor saw it gone
    assert route_parsed_dag(path, "d", [_entry("d", "t")], WORKERS) is True  # its file came back
    assert "d" in load_routing_table(path).tasks


# ------------------------------------------------------------------ the DAG monitor


class FakeAirflow:
    """Stands in for the REST API's two reads (the e2e tests use the real one)."""

    def __init__(self) -> None:
        self.dags: set[str] = set()
        self.errors: dict[str, str] = {}

    def dag_ids(self) -> set[str]:
        return set(self.dags)

    def import_errors(self) -> dict[str, str]:
        return dict(self.errors)


def test_the_monitor_reports_changes_and_drops_routes_of_gone_dags(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_routing_table(with_dag(RoutingTable(), "old", [_entry("old", "t")], WORKERS), config.routing_file)
    lines: list[str] = []
    monitor = DagMonitor(config, lines.append, {"old"}, {})
    airflow = FakeAirflow()
    airflow.dags = {"new"}
    airflow.errors = {"broken.py": "Traceback ...\n  File x\nSyntaxError: invalid syntax\n"}

    monitor.check(airflow)  # type: ignore[arg-type]

    assert lines == [
        "DAG file broken.py does not import: SyntaxError: invalid syntax (the stack runs without it)",
        f"DAG new is ready: POST {config.gateway_url}/runWorkflow/new",
        "DAG old is gone from Airflow; its routes are removed",
    ]
    assert "old" not in load_routing_table(config.routing_file).tasks

    airflow.errors = {}
    monitor.check(airflow)  # type: ignore[arg-type]
    assert lines[-1] == "DAG file broken.py imports again"


def test_the_monitor_keeps_routes_written_while_it_looked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_routing_table(with_dag(RoutingTable(), "back", [_entry("back", "t")], WORKERS), config.routing_file)
    monitor = DagMonitor(config, lambda line: None, {"back"}, {})

    class RewrittenMeanwhile(FakeAirflow):
        def dag_ids(self) -> set[str]:  # the DAG processor routes "back" again during this read
            time.sleep(0.01)
            write_routing_table(
                with_dag(RoutingTable(), "back", [_entry("back", "t2")], WORKERS), config.routing_file
            )
            return set()

    monitor.check(RewrittenMeanwhile())  # type: ignore[arg-type]
    assert "back" in load_routing_table(config.routing_file).tasks


def test_error_summary_is_the_last_line() -> None:
    assert error_summary("Traceback\n  File 'x'\nValueError: bad\n\n") == "ValueError: bad"
    assert error_summary("") == "(no message)"


def test_a_dag_with_an_invalid_task_config_is_an_import_error_of_its_file(tmp_path: Path) -> None:
    from airflow_knative.inventory import InventoryError
    from airflow_knative.local import route_on_parse

    task = SimpleNamespace(
        task_id="t", executor_config={"knative": {"no_such_key": 1}}, execution_timeout=None
    )
    dag: Any = SimpleNamespace(dag_id="d", tasks=[task], default_args={}, fileloc="/dags/d.py")
    env = {
        route_on_parse.WORKER_URLS_ENV: ",".join(WORKERS),
        route_on_parse.ROUTING_FILE_ENV: str(tmp_path / "r.yaml"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with pytest.raises(InventoryError, match=r"/dags/d.py"):
            route_on_parse.dag_policy(dag)
        task.executor_config = {}
        route_on_parse.dag_policy(dag)
    assert load_routing_table(tmp_path / "r.yaml").tasks["d"]["t"].startswith("d-t-")
