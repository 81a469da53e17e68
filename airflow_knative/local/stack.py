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
from types import FrameType, TracebackType

from airflow_knative.local.airflow_rest import AirflowApi
from airflow_knative.local.config import (
    LOOPBACK,
    StackConfig,
    airflow_environment,
    task_environment,
    worker_secret_file,
)
from airflow_knative.local.processes import ProcessGroup, StackStartError, log_tail, wait_until
from airflow_knative.local.routing import build_activator_routing, write_local_routing
from airflow_knative.protocol import READINESS_PATH
from airflow_knative.routing import write_routing_table
from generator.inventory import collect_tasks

STARTUP_TIMEOUT = 180.0


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


class LocalStack:
    """Start with :meth:`start` (or ``with LocalStack(config):``), stop with :meth:`stop`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes = ProcessGroup(config.log_dir)
        self.tasks = collect_tasks(config.dags_folder)
        self.dag_ids = sorted({entry.dag_id for entry in self.tasks})

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bring every component up and wait until the DAGs can be triggered."""
        config = self.config
        config.airflow_home.mkdir(parents=True, exist_ok=True)
        base_env = {**os.environ, **airflow_environment(config)}
        self._migrate(base_env)
        try:
            self._start_components(base_env)
            self.processes.wait_healthy(STARTUP_TIMEOUT)
            self._wait_for_dags()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component."""
        self.processes.stop()

    def _migrate(self, env: dict[str, str]) -> None:
        log_path = self.config.log_dir / "db-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
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
                f"airflow db migrate failed; last lines of {log_path}:\n{log_tail(log_path)}"
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
        start("dag-processor", _python("-m", "airflow", "dag-processor"), env)
        if config.executor == "knative":
            self._start_workers()
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

    def _start_workers(self) -> None:
        config = self.config
        worker_env = {**os.environ, **task_environment(config)}  # no database URL, no auth secrets
        if config.scale_to_zero:
            self._start_activator(worker_env)
            return
        write_local_routing(self.tasks, config.worker_urls, config.routing_file)
        for index, url in enumerate(config.worker_urls):
            port = url.rsplit(":", 1)[1]
            self.processes.start(
                f"worker-{index}",
                _python(
                    "-m",
                    "airflow_knative.cli",
                    "worker",
                    "--host",
                    LOOPBACK,
                    "--port",
                    port,
                    "--concurrency",
                    str(config.worker_concurrency),
                    "--name",
                    f"local-worker-{index}",
                    "--secret-file",
                    str(worker_secret_file(config)),
                ),
                worker_env,
                f"{url}{READINESS_PATH}",
            )

    def _start_activator(self, worker_env: dict[str, str]) -> None:
        """Scale to zero: no worker runs until a request for its service arrives (see activator.py)."""
        config = self.config
        write_routing_table(build_activator_routing(self.tasks, config.activator_url), config.routing_file)
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
            ),
            worker_env,
            f"{config.activator_url}/healthz",
        )

    def _wait_for_dags(self) -> None:
        """Wait until the DAG processor has stored every DAG, so a trigger cannot 404."""
        config = self.config
        with AirflowApi(config.api_url, config.admin_user, config.admin_password) as api:

            def all_dags_stored() -> bool:
                self.processes.check_alive()
                return set(self.dag_ids) <= api.dag_ids()

            wait_until(all_dags_stored, STARTUP_TIMEOUT, f"the DAGs in {config.dags_folder} to be parsed")

    def describe(self) -> str:
        """What a user needs to call the stack."""
        config = self.config
        first = "compute_avg_distributed" if "compute_avg_distributed" in self.dag_ids else self.dag_ids[0]
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
