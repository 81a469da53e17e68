"""``airflow-knative gateway``: options of the workflow gateway.

Only the standard library is imported here: the top-level CLI builds every
sub-command's parser, and the gateway's server stack is imported when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

#: (flag, environment variable, type, default, help); defaults are strings so that
#: argparse converts them like any given value, and a bad environment variable is
#: reported as a usage error of this command only.
_OPTIONS: tuple[tuple[str, str, type, str, str], ...] = (
    ("--host", "AIRFLOW_KNATIVE_GATEWAY_HOST", str, "127.0.0.1",
     "Address to bind (containers use 0.0.0.0)."),
    ("--port", "PORT", int, "8000", "Port to bind; Knative passes it as $PORT."),
    ("--airflow-url", "AIRFLOW_KNATIVE_AIRFLOW_URL", str, "http://127.0.0.1:8080",
     "Base URL of the Airflow API server."),
    ("--wait-timeout", "AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT", float, "300",
     "Seconds a call waits for its run; past it the answer is 504 with a status_url to poll."),
    ("--max-body-bytes", "AIRFLOW_KNATIVE_GATEWAY_MAX_BODY_BYTES", int, "1048576",
     "Largest request body accepted; larger bodies get 413."),
    ("--poll-interval", "AIRFLOW_KNATIVE_GATEWAY_POLL_INTERVAL", float, "0.05",
     "Seconds between two reads of a run's state while waiting."),
    ("--max-polls-per-second", "AIRFLOW_KNATIVE_GATEWAY_MAX_POLLS_PER_SECOND", float, "50",
     "Run-state reads per second for all waiting calls together; beyond it each call polls less often."),
    ("--token-ttl", "AIRFLOW_KNATIVE_GATEWAY_TOKEN_TTL", float, "300",
     "Seconds an Airflow token is reused for the same user and password (0 disables the cache)."),
    ("--dag-cache-ttl", "AIRFLOW_KNATIVE_GATEWAY_DAG_CACHE_TTL", float, "60",
     "Seconds a DAG's leaf tasks and its unpaused state are remembered."),
    ("--airflow-timeout", "AIRFLOW_KNATIVE_GATEWAY_AIRFLOW_TIMEOUT", float, "30",
     "Seconds one request to the Airflow API may take."),
    ("--airflow-max-connections", "AIRFLOW_KNATIVE_GATEWAY_AIRFLOW_MAX_CONNECTIONS", int, "10",
     "Requests in flight to the Airflow API server at once; more wait in the gateway."),
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the gateway's options; each has an environment variable for containers."""
    for flag, env_var, kind, default, help_text in _OPTIONS:
        parser.add_argument(
            flag,
            type=kind,
            default=os.environ.get(env_var, default),
            help=f"{help_text} Env {env_var}; default {default}.",
        )


def run(args: argparse.Namespace) -> int:
    """Serve the gateway until SIGINT/SIGTERM."""
    from airflow_knative.gateway.server import serve
    from airflow_knative.gateway.settings import GatewaySettings

    try:
        settings = GatewaySettings.from_args(args)
    except ValueError as exc:
        print(f"airflow-knative gateway: {exc}", file=sys.stderr)
        return 2
    return serve(settings)
