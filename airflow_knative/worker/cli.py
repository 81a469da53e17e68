"""``airflow-knative worker``: options of the warm task worker."""

from __future__ import annotations

import argparse
import os
import socket

from airflow_knative.protocol import DEFAULT_WORKER_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the worker's options; each has an environment variable for containers."""
    env = os.environ.get
    parser.add_argument(
        "--host",
        default=env("AIRFLOW_KNATIVE_WORKER_HOST", "127.0.0.1"),
        help="Address to bind (containers use 0.0.0.0). Default 127.0.0.1.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("PORT", DEFAULT_WORKER_PORT)),
        help="Port to bind; Knative passes it as $PORT. Default 8080.",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("AIRFLOW_KNATIVE_WORKER_CONCURRENCY", "1")),
        help="Tasks run at once; more get 429 + Retry-After. Match containerConcurrency.",
    )
    parser.add_argument(
        "--secret-file",
        default=env("AIRFLOW_KNATIVE_SECRET_FILE", ""),
        help="File with the executor's shared secret (or set AIRFLOW_KNATIVE_SECRET).",
    )
    parser.add_argument(
        "--execution-api-url",
        default=env("AIRFLOW_KNATIVE_EXECUTION_API_URL", ""),
        help="Airflow Execution API URL; default: [core] execution_api_server_url.",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        help="Seconds between heartbeat events on a running task's stream.",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=float(env("AIRFLOW_KNATIVE_WORKER_GRACE_PERIOD", "300")),
        help="Seconds running tasks may take to finish after SIGTERM.",
    )
    parser.add_argument(
        "--name",
        default=env("K_REVISION") or env("K_SERVICE") or socket.gethostname(),
        help="Name this worker reports in its answers and logs.",
    )


def run(args: argparse.Namespace) -> int:
    """Start the worker (imports Airflow once, then serves)."""
    from airflow_knative.worker.server import serve

    return serve(args)
