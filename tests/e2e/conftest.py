"""The real local stack (Airflow API server, scheduler, DAG processor, workers, gateway), once per session.

Nothing is mocked: every test here goes through the KnativeExecutor, HTTP, the
worker's pool of Airflow supervisors and the gateway, with SQLite as database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.events import read_events
from airflow_knative.local.config import StackConfig, task_environment, worker_secret_file
from airflow_knative.local.processes import answers_ok, die_with_parent, wait_until, worker_command
from airflow_knative.local.stack import STARTUP_TIMEOUT, LocalStack
from airflow_knative.protocol import READINESS_PATH
from tests.conftest import WORKFLOWS, free_port

E2E_DAGS = Path(__file__).parent / "dags"
AUTH = ("admin", "e2e-password")
#: A DAG file that does not import, beside the good ones from the first start on.
BROKEN_DAG_FILE = "e2e_broken.py"
BROKEN_DAG_SOURCE = "from airflow.sdk import dag\n\n@dag(dag_id='e2e_broken'\ndef oops(:\n"


@dataclass
class RunningStack:
    """Handles the tests need on the running stack."""

    stack: LocalStack
    gateway: httpx.Client

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def worker_events(self, event: str) -> list[dict[str, Any]]:
        """Structured events the worker processes logged (see airflow_knative.events)."""
        return [
            {**record, "log_file": log.name}
            for log in sorted(self.config.log_dir.glob("worker-*.log"))
            for record in read_events(log, event)
        ]

    def scheduler_log(self) -> str:
        return (self.config.log_dir / "scheduler.log").read_text(errors="replace")

    def stack_log(self) -> str:
        """What the stack told the user, and its own events."""
        return self.stack.log_path.read_text(errors="replace")

    def stack_events(self, event: str) -> list[dict[str, Any]]:
        return list(read_events(self.stack.log_path, event))

    def airflow(self) -> AirflowClient:
        """A logged-in client of the stack's Airflow REST API (close it, or use ``with``)."""
        return AirflowClient(self.config.api_url, *AUTH)

    def run_workflow(self, dag_id: str, data: Any, **params: str) -> httpx.Response:
        return self.gateway.post(f"/runWorkflow/{dag_id}", json={"input": data}, params=params)

    def wait_for_end(self, status_url: str, timeout: float = 180.0) -> dict[str, Any]:
        """Poll the gateway's ``GET /runs/...`` until the run succeeded or failed; return that answer."""

        def ended() -> dict[str, Any] | None:
            body: dict[str, Any] = self.gateway.get(status_url).json()
            return body if body.get("state") in ("success", "failed") else None

        result: dict[str, Any] = wait_until(ended, timeout, f"the end of {status_url}")
        return result


def stack_config(home: Path, dags: Path, **overrides: Any) -> StackConfig:
    """The e2e stack's options (free ports, SQLite in ``home``); ``overrides`` change single fields."""
    config = StackConfig(
        home=home,
        dags_folder=dags,
        database_url=f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        executor="knative",
        workers=2,
        worker_concurrency=4,
        api_port=free_port(),
        gateway_port=free_port(),
        admin_user=AUTH[0],
        admin_password=AUTH[1],
        parallelism=16,
    )
    config = dataclasses.replace(config, **overrides)
    if "worker_base_port" in overrides:
        return config
    return dataclasses.replace(config, worker_base_port=free_port(max(1, config.workers)))


@pytest.fixture(scope="session")
def e2e_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product's workflows plus the test-only DAGs, in one DAGs folder."""
    dags = tmp_path_factory.mktemp("dags")
    for source in [*WORKFLOWS.glob("*.py"), *E2E_DAGS.glob("*.py")]:
        shutil.copy(source, dags / source.name)
    (dags / BROKEN_DAG_FILE).write_text(BROKEN_DAG_SOURCE)
    return dags


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory, e2e_dags: Path) -> Iterator[RunningStack]:
    """Start the whole local stack once; stop every process at the end."""
    home = tmp_path_factory.mktemp("stack")
    stack = LocalStack(stack_config(home, e2e_dags))
    stack.start()
    try:
        with httpx.Client(base_url=stack.config.gateway_url, auth=AUTH, timeout=120) as gateway:
            yield RunningStack(stack, gateway)
    finally:
        stack.stop()


def start_spare_worker(
    config: StackConfig, name: str, log_path: Path, concurrency: int = 1, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """One more real ``airflow-knative worker`` for the stack's Airflow; return it and its URL once ready.

    It runs in its own process group (stopping it leaves the stack intact) and is in no
    routing table until the test puts it there.
    """
    port = free_port()
    command = worker_command(
        port=port,
        name=name,
        secret_file=worker_secret_file(config),
        concurrency=concurrency,
        extra=extra,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **task_environment(config)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509  # prctl only
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # as long as the stack gives its own workers: importing Airflow took over 60 s
        # on a 2-core machine with a load average above 40
        ready = f"{url}{READINESS_PATH}"
        wait_until(lambda: answers_ok(ready), STARTUP_TIMEOUT, f"worker {name}", interval=0.2)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise
    return process, url
