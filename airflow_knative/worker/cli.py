"""``airflow-knative worker``: options of the warm task worker, declared once in :class:`WorkerOptions`."""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass

from airflow_knative import options
from airflow_knative.options import option
from airflow_knative.protocol import DEFAULT_WORKER_PORT


@dataclass(frozen=True)
class WorkerOptions:
    """The worker's flags, their environment variables (for containers) and defaults."""

    host: str = option(
        "--host",
        "AIRFLOW_KNATIVE_WORKER_HOST",
        "Address to bind (containers use 0.0.0.0).",
        default="127.0.0.1",
    )
    port: int = option(
        "--port", "PORT", "Port to bind; Knative passes it as $PORT.", default=DEFAULT_WORKER_PORT
    )
    concurrency: int = option(
        "--concurrency",
        "AIRFLOW_KNATIVE_WORKER_CONCURRENCY",
        "Tasks run at once; more get 429 + Retry-After. Match containerConcurrency.",
        default=1,
    )
    secret_file: str = option(
        "--secret-file",
        "AIRFLOW_KNATIVE_SECRET_FILE",
        "File with the executor's shared secret (or put the secret itself in $AIRFLOW_KNATIVE_SECRET).",
        default="",
    )
    execution_api_url: str = option(
        "--execution-api-url",
        "AIRFLOW_KNATIVE_EXECUTION_API_URL",
        "Airflow Execution API URL; empty: [core] execution_api_server_url.",
        default="",
    )
    heartbeat_interval: float = option(
        "--heartbeat-interval",
        "AIRFLOW_KNATIVE_WORKER_HEARTBEAT_INTERVAL",
        "Seconds between heartbeat events on a running task's stream.",
        default=5.0,
    )
    grace_period: float = option(
        "--grace-period",
        "AIRFLOW_KNATIVE_WORKER_GRACE_PERIOD",
        "Seconds running tasks may take to finish after SIGTERM.",
        default=300.0,
    )
    name: str = option(
        "--name",
        ("AIRFLOW_KNATIVE_WORKER_NAME", "K_REVISION", "K_SERVICE"),
        "Name this worker reports in its answers and logs (Knative sets $K_REVISION and $K_SERVICE).",
        default_factory=socket.gethostname,
        default_doc="the host name",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the worker's options; each has an environment variable for containers."""
    options.add_arguments(parser, WorkerOptions)


def run(args: argparse.Namespace) -> int:
    """Start the worker (imports Airflow once, then serves)."""
    from airflow_knative.worker.server import serve

    return serve(args)
