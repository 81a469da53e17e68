"""The gateway's options: one frozen value, declared once (flags, env vars, defaults, docs).

Only the standard library is imported here: the top-level CLI builds every
sub-command's parser from this declaration, and the gateway's server stack is
imported when it runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from airflow_knative.options import from_namespace, option


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway needs to serve; ``airflow-knative gateway`` fills it from flags and env vars.

    Frozen so that request handlers can share it without any chance of one
    request changing the behaviour of another.
    """

    host: str = option(
        "--host",
        "AIRFLOW_KNATIVE_GATEWAY_HOST",
        "Address to bind (containers use 0.0.0.0).",
        default="127.0.0.1",
    )
    port: int = option("--port", "PORT", "Port to bind; Knative passes it as $PORT.", default=8000)
    airflow_url: str = option(
        "--airflow-url",
        "AIRFLOW_KNATIVE_AIRFLOW_URL",
        "Base URL of the Airflow API server; it may include a path prefix.",
        default="http://127.0.0.1:8080",
    )
    wait_timeout: float = option(
        "--wait-timeout",
        "AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT",
        "Seconds a call waits for its run; past it the answer is 504 with a status_url to poll. "
        "Keep this below the Knative route's request timeout.",
        default=300.0,
    )
    max_body_bytes: int = option(
        "--max-body-bytes",
        "AIRFLOW_KNATIVE_GATEWAY_MAX_BODY_BYTES",
        "Largest request body accepted; larger bodies get 413 before being parsed.",
        default=1024 * 1024,
    )
    poll_interval: float = option(
        "--poll-interval",
        "AIRFLOW_KNATIVE_GATEWAY_POLL_INTERVAL",
        "Seconds between two reads of a run's state while waiting.",
        default=0.05,
    )
    max_polls_per_second: float = option(
        "--max-polls-per-second",
        "AIRFLOW_KNATIVE_GATEWAY_MAX_POLLS_PER_SECOND",
        "Run-state reads per second for all waiting calls together; beyond it each call polls less "
        "often instead of loading the API server more.",
        default=50.0,
    )
    token_ttl: float = option(
        "--token-ttl",
        "AIRFLOW_KNATIVE_GATEWAY_TOKEN_TTL",
        "Seconds an Airflow token is reused for the same user and password, never past the token's "
        "own exp; 0 turns the cache off.",
        default=300.0,
    )
    dag_cache_ttl: float = option(
        "--dag-cache-ttl",
        "AIRFLOW_KNATIVE_GATEWAY_DAG_CACHE_TTL",
        "Seconds a DAG's leaf tasks and its unpaused state are remembered.",
        default=60.0,
    )
    airflow_timeout: float = option(
        "--airflow-timeout",
        "AIRFLOW_KNATIVE_GATEWAY_AIRFLOW_TIMEOUT",
        "Seconds one request to the Airflow API may take, including the wait for a free connection; "
        "a waiting call gives up once Airflow failed this long in a row.",
        default=30.0,
    )
    # The stock API server (one process, 15 database connections) stopped answering
    # altogether under ~100 concurrent requests: the rest queue in the gateway.
    airflow_max_connections: int = option(
        "--airflow-max-connections",
        "AIRFLOW_KNATIVE_GATEWAY_AIRFLOW_MAX_CONNECTIONS",
        "Requests in flight to the Airflow API server at once; more wait in the gateway.",
        default=10,
    )

    def __post_init__(self) -> None:
        """Reject values that would make the gateway misbehave later rather than fail now."""
        positive = {
            "wait_timeout": self.wait_timeout,
            "max_body_bytes": self.max_body_bytes,
            "poll_interval": self.poll_interval,
            "max_polls_per_second": self.max_polls_per_second,
            "airflow_timeout": self.airflow_timeout,
            "airflow_max_connections": self.airflow_max_connections,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name, value in {"token_ttl": self.token_ttl, "dag_cache_ttl": self.dag_cache_ttl}.items():
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value!r}")
        if not self.airflow_url.startswith(("http://", "https://")):
            raise ValueError(f"airflow_url must start with http:// or https://, got {self.airflow_url!r}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GatewaySettings:
        """Build the settings from the parsed ``airflow-knative gateway`` options."""
        return from_namespace(cls, args, airflow_url=args.airflow_url.rstrip("/"))
