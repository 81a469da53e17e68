"""The gateway's options, in one frozen value built once from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway needs to serve; the CLI fills it from flags and env vars.

    Frozen so that request handlers can share it without any chance of one
    request changing the behaviour of another.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    airflow_url: str = "http://127.0.0.1:8080"
    #: Seconds a synchronous call waits for its run before answering 504.
    wait_timeout: float = 300.0
    #: Largest request body accepted; larger ones get 413 before being parsed.
    max_body_bytes: int = 1024 * 1024
    #: Seconds between two reads of a run's state while waiting for it.
    poll_interval: float = 0.05
    #: Most run-state reads per second, all waiting calls together; more waiting
    #: calls stretch each one's interval instead of loading the API server more.
    max_polls_per_second: float = 50.0
    #: Seconds an Airflow token is reused for the same user and password.
    token_ttl: float = 300.0
    #: Seconds a DAG's leaf tasks and its "known unpaused" mark are reused.
    dag_cache_ttl: float = 60.0
    #: Seconds one Airflow API request may take (connect, read, write, pool).
    airflow_timeout: float = 30.0
    #: Requests the gateway has in flight to the Airflow API server at once; the
    #: rest queue in the gateway. The stock API server (one process, 15 database
    #: connections) stopped answering altogether under ~100 concurrent requests.
    airflow_max_connections: int = 10

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
        return cls(
            host=args.host,
            port=args.port,
            airflow_url=args.airflow_url.rstrip("/"),
            wait_timeout=args.wait_timeout,
            max_body_bytes=args.max_body_bytes,
            poll_interval=args.poll_interval,
            max_polls_per_second=args.max_polls_per_second,
            token_ttl=args.token_ttl,
            dag_cache_ttl=args.dag_cache_ttl,
            airflow_timeout=args.airflow_timeout,
            airflow_max_connections=args.airflow_max_connections,
        )
