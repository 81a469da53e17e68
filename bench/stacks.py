"""The two systems under test: the local stack with the KnativeExecutor, and with the LocalExecutor.

Same Airflow, same DAG files (one shared folder), same low-latency scheduler
settings (applied by LocalStack to both), same ``[core] parallelism``, same
PostgreSQL server (one database each). Both run at once so runs can alternate.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.config import LOW_LATENCY_SETTINGS, StackConfig
from airflow_knative.local.ports import reserve_ports
from airflow_knative.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
BENCH_DAGS = Path(__file__).resolve().parent / "dags"
USER = "admin"
PASSWORD = "bench-password"
SYSTEMS = ("knative", "local")


@dataclass(frozen=True)
class StackSettings:
    """What both stacks share."""

    parallelism: int = 16
    workers: int = 2
    worker_concurrency: int = 16  # >= parallelism: the stand-in for Knative's autoscaler never says 429

    def describe(self) -> dict[str, object]:
        return {
            "parallelism": self.parallelism,
            "knative_workers": self.workers,
            "knative_worker_concurrency": self.worker_concurrency,
            "scheduler_settings": dict(LOW_LATENCY_SETTINGS),
        }


def prepare_dags(folder: Path) -> Path:
    """One DAG folder for both stacks: the product's workflows plus the benchmark-only DAGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in [*(ROOT / "workflows").glob("*.py"), *BENCH_DAGS.glob("*.py")]:
        shutil.copy(source, folder / source.name)
    return folder


def stack_config(
    system: str,
    home: Path,
    dags: Path,
    database_url: str,
    settings: StackSettings,
    scale_to_zero: bool = False,
    prewarm: bool = True,
) -> StackConfig:
    return StackConfig(
        home=home,
        dags_folder=dags,
        database_url=database_url,
        executor=system,
        workers=settings.workers,
        # A scale-to-zero stack starts one worker per service, as Knative starts a pod per
        # service; the depth family runs one task per service at a time.
        worker_concurrency=2 if scale_to_zero else settings.worker_concurrency,
        api_port=reserve_ports(),
        gateway_port=reserve_ports(),
        worker_base_port=reserve_ports(settings.workers),
        admin_user=USER,
        admin_password=PASSWORD,
        parallelism=settings.parallelism,
        scale_to_zero=scale_to_zero,
        # The benchmark scales to zero itself (POST /activator/scale-to-zero) between rounds.
        idle_timeout=600.0,
        activator_port=reserve_ports(),
        prewarm=prewarm,
    )


#: Seconds the harness waits for one Airflow API answer. A shared, busy 2-core machine has
#: been seen to take over 30 s (the client's default) to answer a trigger.
API_TIMEOUT = 120.0


def open_api(stack: LocalStack) -> AirflowClient:
    """A logged-in client of the stack's API server, patient enough for a loaded machine."""
    api = AirflowClient(stack.config.api_url, USER, PASSWORD)
    api.client.timeout = httpx.Timeout(API_TIMEOUT)
    return api


class StackThreads:
    """Start every stack at once, each from its own thread that stays alive until :meth:`stop_all`.

    The stack's processes use ``PR_SET_PDEATHSIG``, which Linux ties to the *thread* that
    started them: a starter thread that returned would take its stack's processes with it.
    """

    def __init__(self, stacks: dict[str, LocalStack]) -> None:
        self.stacks = stacks
        self._stop = threading.Event()
        self._ready: dict[str, threading.Event] = {name: threading.Event() for name in stacks}
        self._errors: dict[str, BaseException] = {}
        self._threads = [
            threading.Thread(target=self._own, args=(name,), name=f"stack-{name}", daemon=True)
            for name in stacks
        ]

    def _own(self, name: str) -> None:
        stack = self.stacks[name]
        try:
            stack.start()
        except BaseException as exc:
            self._errors[name] = exc
            self._ready[name].set()
            return
        self._ready[name].set()
        self._stop.wait()
        stack.stop()

    def start_all(self, timeout: float = 600.0) -> None:
        """Return once every stack is up; on any failure stop them all and raise."""
        for thread in self._threads:
            thread.start()
        for event in self._ready.values():
            event.wait(timeout)
        if self._errors or not all(e.is_set() for e in self._ready.values()):
            self.stop_all()
            name, exc = next(iter(self._errors.items()), ("?", TimeoutError("start timed out")))
            raise RuntimeError(f"the {name} stack did not start: {exc}") from exc

    def stop_all(self) -> None:
        """Stop every stack and wait for the owner threads."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(120)
