"""The local stack: Airflow, the KnativeExecutor, worker processes and the gateway on 127.0.0.1.

The same components as in a cluster, with local processes standing in for the
Knative services, so a workflow runs through exactly the executor -> HTTP ->
worker -> gateway path it takes on Knative.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.events import log_event
from airflow_knative.inventory import InventoryError
from airflow_knative.local.config import (
    LOOPBACK,
    StackConfig,
    airflow_environment,
    api_server_workers,
    task_environment,
    worker_secret_file,
)
from airflow_knative.local.dag_folder import DagFolderScan, relative_to_folder, scan_dag_folder
from airflow_knative.local.dag_monitor import DagMonitor, describe_import_error
from airflow_knative.local.instance_lock import InstanceLock, StackAlreadyRunning
from airflow_knative.local.preflight import PortsUnavailable, check_ports, port_claims
from airflow_knative.local.processes import (
    ProcessGroup,
    StackStartError,
    log_size,
    log_tail,
    wait_until,
    worker_command,
)
from airflow_knative.local.route_on_parse import WORKER_URLS_ENV, write_settings_module
from airflow_knative.local.routing import write_activator_routing, write_local_routing
from airflow_knative.local.warmup import warm_execution_api
from airflow_knative.protocol import READINESS_PATH

STARTUP_TIMEOUT = 180.0


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


class LocalStack:
    """Start with :meth:`start` (or ``with LocalStack(config):``), stop with :meth:`stop`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes = ProcessGroup(config.log_dir)
        self.lock = InstanceLock(config.home)
        self.scan = DagFolderScan()
        self.monitor: DagMonitor | None = None

    @property
    def dag_ids(self) -> list[str]:
        """The DAGs that parsed at start-up."""
        return self.scan.dag_ids

    @property
    def log_path(self) -> Path:
        """The stack's own log: what it told the user, and its structured events."""
        return self.config.log_dir / "stack.log"

    def report(self, line: str) -> None:
        """Tell the user (stdout) and keep it in :attr:`log_path`."""
        print(line, flush=True)
        self.info("%s", line)

    def info(self, message: str, *args: object) -> None:
        """Append one line to :attr:`log_path` (a logger's ``info``, for :func:`log_event`)."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log_file:
            log_file.write((message % args) + "\n")

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Check, then bring every component up and wait until the DAGs can be triggered.

        Nothing in ``--home`` is touched before this process holds the stack's lock
        and every port is known to be free: a second start changes nothing.
        """
        config = self.config
        ports = {claim.option.lstrip("-"): claim.port for claim in port_claims(config)[:2]}
        try:
            self.lock.acquire({"ports": ports, "gateway": config.gateway_url, "airflow": config.api_url})
            check_ports(config)
        except (StackAlreadyRunning, PortsUnavailable) as exc:
            self.lock.release()
            raise StackStartError(str(exc)) from None
        try:
            self.scan = self._scan()
            config.airflow_home.mkdir(parents=True, exist_ok=True)
            base_env = {**os.environ, **airflow_environment(config)}
            self._migrate(base_env)
            self._start_components(base_env)
            self.processes.wait_healthy(STARTUP_TIMEOUT)
            self._warm_up()
            self._wait_for_dags()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component, then give ``--home`` free for the next start."""
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        self.processes.stop()
        self.lock.release()

    def _scan(self) -> DagFolderScan:
        try:
            return scan_dag_folder(self.config.dags_folder)
        except InventoryError as exc:  # no DAG folder at all: say which option sets it
            raise StackStartError(f"{exc}: pass --dags-folder (make run ARGS='--dags-folder ...')") from None

    def _migrate(self, env: dict[str, str]) -> None:
        log_path = self.config.log_dir / "db-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        since = log_size(log_path)
        with log_path.open("ab") as log_file:
            result = subprocess.run(
                _python("-m", "airflow", "db", "migrate"),
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackStartError(
                f"airflow db migrate failed; its last lines in {log_path}:\n{log_tail(log_path, since=since)}"
            )

    def _start_components(self, env: dict[str, str]) -> None:
        config = self.config
        start = self.processes.start
        start(
            "api-server",
            _python("-m", "airflow", "api-server", "--host", LOOPBACK, "--port", str(config.api_port)),
            env,
            f"{config.api_url}/api/v2/monitor/health",
        )
        if config.executor == "knative":
            self._write_routing()
            start("dag-processor", _python("-m", "airflow", "dag-processor"), self._dag_processor_env(env))
            self._start_workers()
        else:
            start("dag-processor", _python("-m", "airflow", "dag-processor"), env)
        start("scheduler", _python("-m", "airflow", "scheduler", "--skip-serve-logs"), env)
        start(
            "gateway",
            _python(
                "-m",
                "airflow_knative.cli",
                "gateway",
                "--host",
                LOOPBACK,
                "--port",
                str(config.gateway_port),
                "--airflow-url",
                config.api_url,
            ),
            dict(os.environ),
            f"{config.gateway_url}/healthz",
        )

    def _write_routing(self) -> None:
        """The routing table at start-up: worker URLs, or one template through the activator."""
        config = self.config
        if config.scale_to_zero:
            write_activator_routing(self.scan.entries, config.activator_url, config.routing_file)
        else:
            write_local_routing(self.scan.entries, config.worker_urls, config.routing_file)

    def _dag_processor_env(self, env: dict[str, str]) -> dict[str, str]:
        """The DAG processor routes each DAG as it parses it (see ``route_on_parse``)."""
        settings_dir = write_settings_module(self.config.home / "dag-processor-settings")
        python_path = os.pathsep.join(p for p in (str(settings_dir), env.get("PYTHONPATH", "")) if p)
        return {**env, "PYTHONPATH": python_path, WORKER_URLS_ENV: ",".join(self.config.worker_urls)}

    def _start_workers(self) -> None:
        config = self.config
        worker_env = {**os.environ, **task_environment(config)}  # no database URL, no auth secrets
        if config.scale_to_zero:
            self._start_activator(worker_env)
            return
        for index, url in enumerate(config.worker_urls):
            port = url.rsplit(":", 1)[1]
            self.processes.start(
                f"worker-{index}",
                worker_command(
                    port=int(port),
                    name=f"local-worker-{index}",
                    secret_file=worker_secret_file(config),
                    concurrency=config.worker_concurrency,
                    host=LOOPBACK,
                ),
                worker_env,
                f"{url}{READINESS_PATH}",
            )

    def _start_activator(self, worker_env: dict[str, str]) -> None:
        """Scale to zero: no worker runs until a request for its service arrives (see activator.py)."""
        config = self.config
        self.processes.start(
            "activator",
            _python(
                "-m",
                "airflow_knative.local.activator",
                "--host",
                LOOPBACK,
                "--port",
                str(config.activator_port),
                "--secret-file",
                str(worker_secret_file(config)),
                "--log-dir",
                str(config.log_dir),
                "--idle-timeout",
                str(config.idle_timeout),
                "--worker-concurrency",
                str(config.worker_concurrency),
                "--max-starting",
                str(config.max_starting),
            ),
            worker_env,
            f"{config.activator_url}/healthz",
        )

    def _warm_up(self) -> None:
        """Pay the first-request costs now (see :mod:`airflow_knative.local.warmup`)."""
        workers = api_server_workers(self.config.database_url)
        log_event(self, "stack_warm", **warm_execution_api(self.config, workers, STARTUP_TIMEOUT))

    def _wait_for_dags(self) -> None:
        """Wait until Airflow has stored every DAG and listed every broken file, as the scan found them.

        Then a trigger cannot 404, and Airflow's import errors (UI, REST API) already
        name every file the stack runs without.
        """
        config = self.config
        broken = {relative_to_folder(name, config.dags_folder) for name in self.scan.errors}
        dags: set[str] = set()
        errors: dict[str, str] = {}
        with AirflowClient(config.api_url, config.admin_user, config.admin_password) as api:

            def folder_parsed() -> bool:
                self.processes.check_alive()
                dags.clear()
                dags.update(api.dag_ids())
                errors.clear()
                errors.update(api.import_errors())
                listed = {relative_to_folder(name, config.dags_folder) for name in errors}
                return set(self.dag_ids) <= dags and broken <= listed

            wait_until(folder_parsed, STARTUP_TIMEOUT, f"the DAGs in {config.dags_folder} to be parsed")
            for dag_id in self.dag_ids:  # the API server loads each DAG once; a trigger then finds it
                api.tasks(dag_id)
            log_event(self, "stack_warm", warmed="dag_definitions", dag_ids=self.dag_ids)
        for name, trace in sorted(errors.items()):
            self.report(
                f"{describe_import_error(name, trace)} (the stack runs without it; "
                "Airflow lists it under Import errors)"
            )
        self.monitor = DagMonitor(config, self.report, dags, errors)
        self.monitor.start()
        log_event(self, "stack_up", dag_ids=sorted(dags), import_errors=sorted(errors), pid=os.getpid())

    def describe(self) -> str:
        """What a user needs to call the stack."""
        config = self.config
        first = "compute_avg_distributed" if "compute_avg_distributed" in self.dag_ids else None
        first = first or (self.dag_ids[0] if self.dag_ids else "<dag_id>")
        return "\n".join(
            [
                f"airflow-knative local stack is up ({config.executor} executor, "
                f"{config.workers} worker(s)).",
                f"  Gateway:     {config.gateway_url}",
                f"  Airflow UI:  {config.api_url}  (user {config.admin_user})",
                f"  Logs:        {config.log_dir}",
                "Run a workflow:",
                f"  curl -s -u {config.admin_user}:{config.admin_password} "
                "-H 'Content-Type: application/json' \\",
                f"    -d '{{\"input\": [1, 2, 3, 4]}}' {config.gateway_url}/runWorkflow/{first}",
                f"Add, change or remove DAG files in {config.dags_folder} while it runs: "
                "they are routed as Airflow parses them (within seconds).",
                "Press Ctrl-C to stop.",
            ]
        )


def run_until_interrupted(args: argparse.Namespace) -> int:
    """``airflow-knative dev``: start, print how to use it, watch, stop on Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = LocalStack(StackConfig.from_args(args))
    print(f"Starting the local stack (logs in {stack.config.log_dir}) ...", flush=True)
    try:
        stack.start()
    except StackStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(stack.describe(), flush=True)
    try:
        while not stop.wait(1.0):
            stack.processes.check_alive()
    except StackStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        stack.stop()
    return 0
