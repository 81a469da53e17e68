"""Everything the local stack's processes are told: ports, paths, secrets, Airflow settings."""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from airflow_knative.options import cli_options, from_namespace, option

LOOPBACK = "127.0.0.1"
EXECUTORS = {"knative": "airflow_knative.executor.KnativeExecutor", "local": "LocalExecutor"}

#: Low-latency scheduling, as measured in shared/notes/platform-facts.md (about 21 % of a
#: core idle for the scheduler, against 1.5 % with Airflow's defaults).
LOW_LATENCY_SETTINGS = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.05",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
}


@dataclass(frozen=True)
class StackConfig:
    """Resolved options of one local stack; fields made with ``option`` are ``airflow-knative dev``'s flags.

    Every option has a default: `make run` passes none.
    """

    home: Path = option(
        "--home",
        "AIRFLOW_KNATIVE_DEV_HOME",
        "Folder for AIRFLOW_HOME, the database, secrets and every component's log; one stack per home.",
        default=Path(".run"),
    )
    dags_folder: Path = option(
        "--dags-folder", "AIRFLOW_KNATIVE_DEV_DAGS_FOLDER", "DAG files to serve.", default=Path("workflows")
    )
    database_url: str = option(
        "--database-url",
        "AIRFLOW_KNATIVE_DEV_DATABASE_URL",
        "Airflow metadata database URL (any Airflow database URL); empty: SQLite in --home.",
        default="",
    )
    executor: str = option(
        "--executor",
        "AIRFLOW_KNATIVE_DEV_EXECUTOR",
        "knative, or Airflow's stock LocalExecutor (local) for comparisons.",
        default="knative",
        choices=tuple(EXECUTORS),
    )
    workers: int = option(
        "--workers",
        "AIRFLOW_KNATIVE_DEV_WORKERS",
        "Local worker processes standing in for services.",
        default=2,
    )
    worker_concurrency: int = option(
        "--worker-concurrency",
        "AIRFLOW_KNATIVE_DEV_WORKER_CONCURRENCY",
        "Tasks each worker runs at once.",
        default=4,
    )
    api_port: int = option(
        "--api-port", "AIRFLOW_KNATIVE_DEV_API_PORT", "Airflow API server and UI.", default=8080
    )
    gateway_port: int = option(
        "--gateway-port", "AIRFLOW_KNATIVE_DEV_GATEWAY_PORT", "Workflow gateway.", default=8000
    )
    worker_base_port: int = option(
        "--worker-base-port",
        "AIRFLOW_KNATIVE_DEV_WORKER_BASE_PORT",
        "First worker's port; the others follow.",
        default=8101,
    )
    admin_user: str = option(
        "--admin-user", "AIRFLOW_KNATIVE_DEV_USER", "Airflow user the stack creates.", default="admin"
    )
    admin_password: str = option(
        "--admin-password",
        "AIRFLOW_KNATIVE_DEV_PASSWORD",
        "That user's password; fine only because everything listens on 127.0.0.1.",
        default="admin",
    )
    parallelism: int = option(
        "--parallelism", "AIRFLOW_KNATIVE_DEV_PARALLELISM", "[core] parallelism.", default=32
    )
    #: Workers start on the first request for their service and stop when idle (Knative's scale
    #: to zero), behind the activator on ``activator_port``; otherwise ``workers`` always run.
    scale_to_zero: bool = option(
        "--scale-to-zero",
        "AIRFLOW_KNATIVE_DEV_SCALE_TO_ZERO",
        "One worker per service, started by an activator on the first request and stopped when idle "
        "(as Knative does); --workers is then unused.",
        default=False,
    )
    idle_timeout: float = option(
        "--idle-timeout",
        "AIRFLOW_KNATIVE_DEV_IDLE_TIMEOUT",
        "With --scale-to-zero: seconds idle before a stop.",
        default=30.0,
    )
    max_starting: int = option(
        "--max-starting",
        "AIRFLOW_KNATIVE_DEV_MAX_STARTING",
        "With --scale-to-zero: workers starting at once, task starts first, then pre-warms "
        "nearest first; 0: no limit (faster in make bench on 2 cores, see docs/prewarm.md).",
        default=0,
    )
    activator_port: int = option(
        "--activator-port",
        "AIRFLOW_KNATIVE_DEV_ACTIVATOR_PORT",
        "With --scale-to-zero: the activator in front of every service.",
        default=8100,
    )
    #: ``[knative_executor] prewarm``: wake downstream services when a task is dispatched.
    prewarm: bool = option(
        "--no-prewarm",
        "AIRFLOW_KNATIVE_DEV_PREWARM",
        "Do not wake downstream services when a task is dispatched ([knative_executor] prewarm).",
        default=True,
    )
    #: Seconds without a task heartbeat before the scheduler fails the task instance
    #: (``[scheduler] task_instance_heartbeat_timeout``); None keeps Airflow's 300.
    #: The fault tests lower it to see a killed worker's task retried quickly. Not a flag.
    task_heartbeat_timeout: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StackConfig:
        """Build from ``airflow-knative dev`` options, making paths absolute."""
        home = args.home.resolve()
        return from_namespace(
            cls,
            args,
            home=home,
            dags_folder=args.dags_folder.resolve(),
            database_url=args.database_url or f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        )

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME of every process."""
        return self.home / "airflow"

    @property
    def log_dir(self) -> Path:
        """One log file per component lives here."""
        return self.home / "logs"

    @property
    def routing_file(self) -> Path:
        """The routing table the executor reads."""
        return self.home / "routing.yaml"

    @property
    def secrets_dir(self) -> Path:
        """Generated secrets, kept across restarts."""
        return self.home / "secrets"

    @property
    def api_url(self) -> str:
        """The Airflow API server."""
        return f"http://{LOOPBACK}:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        """The workflow gateway."""
        return f"http://{LOOPBACK}:{self.gateway_port}"

    @property
    def activator_url(self) -> str:
        """The activator in front of every service (``scale_to_zero`` only)."""
        return f"http://{LOOPBACK}:{self.activator_port}"

    @property
    def worker_urls(self) -> list[str]:
        """The local worker processes."""
        return [f"http://{LOOPBACK}:{self.worker_base_port + i}" for i in range(self.workers)]


def environment_variable(flag: str) -> str:
    """The environment variable behind ``airflow-knative dev``'s option ``flag`` (``--api-port``)."""
    return next(opt.spec.env[0] for opt in cli_options(StackConfig) if opt.spec.flag == flag)


def stored_secret(path: Path, make: str | None = None) -> str:
    """Return the secret in ``path``, creating it (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make or secrets.token_urlsafe(48))
    return path.read_text().strip()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def airflow_environment(config: StackConfig) -> dict[str, str]:
    """Airflow settings shared by the API server, scheduler and DAG processor."""
    passwords = config.home / "passwords.json"
    passwords.write_text(json.dumps({config.admin_user: config.admin_password}))
    passwords.chmod(0o600)
    return {
        **task_environment(config),
        **LOW_LATENCY_SETTINGS,
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[config.executor],
        "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
        "AIRFLOW__CORE__FERNET_KEY": stored_secret(config.secrets_dir / "fernet_key", _fernet_key()),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": config.database_url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{config.admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": stored_secret(config.secrets_dir / "jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": stored_secret(config.secrets_dir / "api_secret_key"),
        "AIRFLOW__API__BASE_URL": config.api_url,
        **_database_settings(config.database_url),
        **_heartbeat_settings(config.task_heartbeat_timeout),
        "AIRFLOW__KNATIVE_EXECUTOR__ROUTING_FILE": str(config.routing_file),
        "AIRFLOW__KNATIVE_EXECUTOR__SECRET_FILE": str(worker_secret_file(config)),
        "AIRFLOW__KNATIVE_EXECUTOR__PREWARM": str(config.prewarm),
    }


def _heartbeat_settings(timeout: int | None) -> dict[str, str]:
    """A lowered heartbeat timeout, checked often enough to matter (Airflow checks every 10 s)."""
    if timeout is None:
        return {}
    return {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(timeout),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
    }


def api_server_workers(database_url: str) -> int:
    """SQLite takes one writer at a time: a second API server process only adds lock contention."""
    return 1 if database_url.startswith("sqlite") else 2


def _database_settings(database_url: str) -> dict[str, str]:
    return {"AIRFLOW__API__WORKERS": str(api_server_workers(database_url))}


def task_environment(config: StackConfig) -> dict[str, str]:
    """What a process that runs tasks needs: no database, no auth secrets."""
    return {
        "AIRFLOW_HOME": str(config.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.log_dir / "tasks"),
        # Airflow's 5 s per Execution API call is too short for a local API server on
        # SQLite sharing a busy machine: the supervisor gave up starting tasks (ReadTimeout
        # on every retry) with the load average above 40 on 2 cores.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }


def worker_secret_file(config: StackConfig) -> Path:
    """The executor-to-worker shared secret, generated on first start."""
    path = config.secrets_dir / "worker_secret"
    stored_secret(path)
    return path
