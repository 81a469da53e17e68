"""A worker told to stop (SIGTERM, as Kubernetes does) finishes the task it runs, then exits."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_knative.local.processes import wait_until
from airflow_knative.routing import ServiceEntry, load_routing_table, write_routing_table
from tests.e2e.conftest import RunningStack, start_spare_worker

pytestmark = pytest.mark.e2e

DRAIN_DAG = textwrap.dedent(
    """
    import time

    from airflow.sdk import dag, task


    @dag(dag_id="e2e_drain", schedule=None, catchup=False)
    def e2e_drain():
        # The service the test routes to its own worker: the stack's DAG processor keeps a
        # route a task names itself, where it would route a generated name to the stack's workers.
        @task(executor_config={"knative": {"service": "e2e-drain"}})
        def nap():
            time.sleep(3)
            return "finished despite SIGTERM"

        nap()


    e2e_drain()
    """
)


@pytest.fixture
def extra_worker(
    running_stack: RunningStack, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real worker process of its own, so stopping it leaves the shared stack intact."""
    config = running_stack.config
    log_path = tmp_path / "drain-worker.log"
    process, url = start_spare_worker(config, "drain-worker", log_path, extra=("--grace-period", "60"))
    try:
        table = load_routing_table(config.routing_file)
        table.services["e2e-drain"] = ServiceEntry(url=url)
        table.tasks["e2e_drain"] = {"nap": "e2e-drain"}
        write_routing_table(table, config.routing_file)  # the executor re-reads a changed table
        yield process, log_path
    finally:
        process.kill()
        process.wait(10)


def test_sigterm_lets_the_running_task_finish(
    running_stack: RunningStack, e2e_dags: Path, extra_worker: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, log_path = extra_worker
    (e2e_dags / "e2e_drain.py").write_text(DRAIN_DAG)
    accepted = wait_until(
        lambda: (r := running_stack.run_workflow("e2e_drain", None, wait="false")).status_code == 202 and r,
        timeout=90,
        interval=2,
    )
    wait_until(lambda: '"event": "task_accepted"' in log_path.read_text(), timeout=60, interval=0.1)

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)  # uvicorn re-raises SIGTERM after its graceful shutdown: exit code -15

    log = log_path.read_text()
    assert log.index('"event": "worker_draining"') < log.index('"event": "task_finished"')

    final = running_stack.wait_for_end(accepted.json()["status_url"], timeout=30)
    assert final["state"] == "success"
    assert final["output"] == "finished despite SIGTERM"
