"""``airflow-knative dev``: options of the local stack."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from airflow_knative.local.config import PORT_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the local stack's options (all have defaults: `make run` passes none)."""
    env = os.environ.get
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(env("AIRFLOW_KNATIVE_DEV_HOME", ".run")),
        help="Folder for AIRFLOW_HOME, the database, secrets and every component's log.",
    )
    parser.add_argument("--dags-folder", type=Path, default=Path("workflows"), help="DAG files to serve.")
    parser.add_argument(
        "--database-url",
        default=env("AIRFLOW_KNATIVE_DEV_DATABASE_URL", ""),
        help="Airflow metadata database URL; default: SQLite in --home.",
    )
    parser.add_argument(
        "--executor",
        choices=("knative", "local"),
        default="knative",
        help="knative (default), or Airflow's stock LocalExecutor for comparisons.",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="Local worker processes standing in for services."
    )
    parser.add_argument("--worker-concurrency", type=int, default=4, help="Tasks each worker runs at once.")
    parser.add_argument(
        "--api-port",
        type=int,
        default=int(env(PORT_ENV["--api-port"], "8080")),
        help=f"Airflow API server and UI (env {PORT_ENV['--api-port']}).",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=int(env(PORT_ENV["--gateway-port"], "8000")),
        help=f"Workflow gateway (env {PORT_ENV['--gateway-port']}).",
    )
    parser.add_argument(
        "--worker-base-port",
        type=int,
        default=int(env(PORT_ENV["--worker-base-port"], "8101")),
        help=f"First worker's port; the others follow (env {PORT_ENV['--worker-base-port']}).",
    )
    parser.add_argument("--admin-user", default=env("AIRFLOW_KNATIVE_DEV_USER", "admin"))
    parser.add_argument(
        "--admin-password",
        default=env("AIRFLOW_KNATIVE_DEV_PASSWORD", "admin"),
        help="Fine only because everything listens on 127.0.0.1.",
    )
    parser.add_argument("--parallelism", type=int, default=32, help="[core] parallelism.")
    parser.add_argument(
        "--scale-to-zero",
        action="store_true",
        help="One worker per service, started by an activator on the first request and stopped "
        "when idle (as Knative does); --workers is then unused.",
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=30.0, help="With --scale-to-zero: seconds idle before a stop."
    )
    parser.add_argument(
        "--activator-port", type=int, default=int(env("AIRFLOW_KNATIVE_DEV_ACTIVATOR_PORT", "8100"))
    )
    parser.add_argument(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        help="Do not wake downstream services when a task is dispatched ([knative_executor] prewarm).",
    )


def run(args: argparse.Namespace) -> int:
    """Start everything, print how to call it, stop everything on Ctrl-C."""
    from airflow_knative.local.stack import run_until_interrupted

    return run_until_interrupted(args)
