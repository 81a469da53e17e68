"""Fault injection on the real local stack: real Airflow processes, real workers, faults by signal.

Nothing is mocked. Each scenario triggers DAGs from ``tests/faults/dags`` whose
tasks write a ledger line when they start and when they end, injects a fault
(kills a scheduler, breaks the routing file, ...) and asserts from the ledger and
from Airflow's own records what a user cares about: each task ran once and the
run succeeded. Recovery times are appended to ``.run/faults/recovery.jsonl``.

This module holds the scheduler-side fixtures (:class:`FaultStack`); fault tests
of other components bring their own fixtures in their own modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local import stack as local_stack
from airflow_knative.local.config import StackConfig, airflow_environment
from airflow_knative.local.processes import Component, StackStartError
from airflow_knative.local.stack import LocalStack
from tests.conftest import REPO_ROOT, free_port
from tests.metrics_readers import StatsdListener, airflow_statsd_env

FAULT_DAGS = Path(__file__).parent / "dags"
AUTH = ("admin", "faults-password")
FIGURES_FILE = REPO_ROOT / ".run" / "faults" / "recovery.jsonl"
SLOW_MACHINE_STARTUP_TIMEOUT = 480.0

#: Let a restarted scheduler find a killed scheduler's tasks within seconds rather than
#: minutes (Airflow's defaults: 30 s without heartbeat, checked every 300 s), and let
#: the executor check watched tasks every second. Production values can set the same.
FAST_RECOVERY = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__KNATIVE_EXECUTOR__WATCH_INTERVAL": "1",
    # The test machine is shared and often overloaded: give Execution API calls more than
    # Airflow's 5 s before a task attempt gives up (the attempt would fail before it ran).
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
}


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Call ``condition`` until it returns something truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every ``start``/``end`` line the fault DAGs' tasks wrote (none yet: empty)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def runs_per_task(ledger: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, int]]:
    """``(task_id, map_index) -> {"start": n, "end": n}`` from a ledger."""
    counts: dict[tuple[str, int], dict[str, int]] = {}
    for line in ledger:
        entry = counts.setdefault((line["task_id"], line["map_index"]), {"start": 0, "end": 0})
        entry[line["what"]] += 1
    return counts


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """Set ``extra`` in ``os.environ`` (which the stack's processes inherit) for the block."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class FaultStack:
    """A running local stack whose schedulers the tests stop, kill and start."""

    stack: LocalStack
    extra_env: dict[str, str]
    work_dir: Path
    schedulers: list[Component] = field(default_factory=list)
    #: Receives the schedulers' StatsD metrics, when the fixture set one up.
    statsd: StatsdListener | None = None
    _runs: int = 0

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def api(self) -> AirflowClient:
        config = self.config
        return AirflowClient(config.api_url, config.admin_user, config.admin_password)

    # -- schedulers ---------------------------------------------------------------------------

    @property
    def scheduler(self) -> Component:
        """The newest scheduler that still runs."""
        alive = [c for c in self.schedulers if c.process.poll() is None]
        assert alive, "no scheduler is running"
        return alive[-1]

    def start_scheduler(self) -> Component:
        """Start one more ``airflow scheduler`` with the stack's environment (its own log file)."""
        env = {**os.environ, **self.extra_env, **airflow_environment(self.config)}
        name = f"scheduler-{len(self.schedulers) + 1}"
        command = [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"]
        component = self.stack.processes.start(name, command, env)
        self.schedulers.append(component)
        return component

    def signal_scheduler(self, sig: signal.Signals, exit_timeout: float = 90.0) -> float:
        """Send ``sig`` to the current scheduler's process group, wait for it to exit; return when sent."""
        component = self.scheduler
        sent_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, sig)
        try:
            component.process.wait(exit_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{component.name} did not exit within {exit_timeout}s of {sig.name}")
        with contextlib.suppress(ProcessLookupError):  # children the scheduler left behind
            os.killpg(component.process.pid, signal.SIGKILL)
        return sent_at

    def wait_for_log(self, component: Component, text: str, timeout: float) -> float:
        """Wait until ``text`` appears in a component's log; return the time it was seen."""
        poll(
            lambda: text in component.log_path.read_text(errors="replace"),
            timeout,
            f"{text!r} in {component.name}",
        )
        return time.time()

    # -- runs -----------------------------------------------------------------------------------

    def new_ledger(self) -> tuple[Path, Path]:
        """A fresh ledger file and release file for one run."""
        self._runs += 1
        return self.work_dir / f"ledger-{self._runs}.jsonl", self.work_dir / f"release-{self._runs}"

    def trigger(self, dag_id: str, **conf: Any) -> str:
        """Unpause ``dag_id`` (new DAGs start paused) and trigger a run with ``conf``."""
        with self.api() as api:
            api.unpause(dag_id)
            return api.trigger(dag_id, conf)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        """Poll the run until success/failed; an API server too busy to answer one poll is asked again."""
        state = "unknown"

        def ended() -> bool:
            nonlocal state
            try:
                with self.api() as api:
                    state = str(api.dag_run(dag_id, run_id)["state"])
            except httpx.TransportError:
                return False
            return state in ("success", "failed")

        poll(ended, timeout, f"run {run_id} of {dag_id} to end (last state {state})", interval=0.5)
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        with self.api() as api:
            return api.task_instances(dag_id, run_id)


def _stack_config(home: Path, dags: Path, database_url: str) -> StackConfig:
    return StackConfig(
        home=home,
        dags_folder=dags,
        database_url=database_url,
        executor="knative",
        workers=2,
        worker_concurrency=4,
        api_port=free_port(),
        gateway_port=free_port(),
        worker_base_port=free_port(2),
        admin_user=AUTH[0],
        admin_password=AUTH[1],
        parallelism=16,
    )


@contextlib.contextmanager
def running_fault_stack(
    tmp_path_factory: pytest.TempPathFactory, database_url: str | None, extra_env: dict[str, str]
) -> Iterator[FaultStack]:
    """Start the local stack on the fault DAGs (SQLite unless ``database_url``); stop it afterwards."""
    home = tmp_path_factory.mktemp("fault-stack")
    dags = tmp_path_factory.mktemp("fault-dags")
    for source in FAULT_DAGS.glob("*.py"):
        shutil.copy(source, dags / source.name)
    url = database_url or f"sqlite:///{home / 'airflow' / 'airflow.db'}"
    with environment(extra_env), pytest.MonkeyPatch.context() as patch:
        # The machine is shared with other builds: allow a slow start rather than fail on it.
        patch.setattr(local_stack, "STARTUP_TIMEOUT", SLOW_MACHINE_STARTUP_TIMEOUT)
        for attempt in range(3):
            stack = LocalStack(_stack_config(home, dags, url))
            try:
                stack.start()
                break
            except StackStartError as exc:
                # Another build took one of the free ports picked for this stack before a
                # component bound it: pick new ones (anything else is a real failure).
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
    work_dir = tmp_path_factory.mktemp("fault-work")
    fault_stack = FaultStack(stack, extra_env, work_dir)
    fault_stack.schedulers = [c for c in stack.processes.components if c.name == "scheduler"]
    try:
        yield fault_stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The local stack (SQLite, one scheduler) with fast orphan detection, for one test module."""
    statsd = StatsdListener()
    try:
        with running_fault_stack(
            tmp_path_factory, None, {**FAST_RECOVERY, **airflow_statsd_env(statsd.port)}
        ) as stack:
            stack.statsd = statsd
            yield stack
    finally:
        statsd.close()


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL database (bench/postgres.py), for real row locks between schedulers."""
    from bench.postgres import PostgresUnavailableError, start_temp_postgres

    try:
        server = start_temp_postgres()
    except PostgresUnavailableError as exc:
        pytest.fail(f"two schedulers need PostgreSQL: {exc}")
    try:
        yield server.create_database("airflow_faults")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_scheduler_stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[FaultStack]:
    """The local stack on PostgreSQL with two schedulers at once, as values/production.yaml runs them."""
    slow_machine = {
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": FAST_RECOVERY["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]
    }
    with running_fault_stack(tmp_path_factory, postgres_url, slow_machine) as stack:
        stack.start_scheduler()
        yield stack


@pytest.fixture(scope="session")
def recovery_figures() -> Iterator[list[dict[str, Any]]]:
    """Collects recovery times; written to .run/faults/recovery.jsonl and printed at the end."""
    figures: list[dict[str, Any]] = []
    yield figures
    if figures:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES_FILE.open("a") as handle:
            for figure in figures:
                handle.write(json.dumps({"at": time.time(), **figure}) + "\n")
        print("\nrecovery figures (also in .run/faults/recovery.jsonl):")
        for figure in figures:
            print("  " + json.dumps(figure))
