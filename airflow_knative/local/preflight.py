"""Checks made before the stack touches anything: every port it will bind is free.

A busy port found this way is reported at once, naming the option (and the
environment variable) that moves it, instead of as the last line of a component's
log seconds later.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_knative.local.config import LOOPBACK, StackConfig, environment_variable
from airflow_knative.local.ports import port_is_free


class PortsUnavailable(RuntimeError):
    """One or more ports the stack needs are taken; the message says how to pick others."""


@dataclass(frozen=True)
class PortClaim:
    """A port one component will bind, and the option that chooses it."""

    component: str
    port: int
    option: str

    def describe(self) -> str:
        """``port 8080 (Airflow API server): change it with --api-port or AIRFLOW_KNATIVE_DEV_API_PORT``."""
        env = environment_variable(self.option)
        return f"port {self.port} ({self.component}): change it with {self.option} or {env}"


def port_claims(config: StackConfig) -> list[PortClaim]:
    """Every port the stack will bind, with its component and option."""
    claims = [
        PortClaim("Airflow API server", config.api_port, "--api-port"),
        PortClaim("gateway", config.gateway_port, "--gateway-port"),
    ]
    if config.executor == "knative":
        claims += [
            PortClaim(f"worker-{index}", config.worker_base_port + index, "--worker-base-port")
            for index in range(config.workers)
        ]
    return claims


def check_ports(config: StackConfig) -> None:
    """Raise :class:`PortsUnavailable` naming every busy or doubly used port and how to move it."""
    claims = port_claims(config)
    problems = []
    seen: dict[int, PortClaim] = {}
    for claim in claims:
        if not 0 < claim.port < 65536:
            problems.append(f"{claim.describe()} - not a valid port")
        elif claim.port in seen:
            problems.append(f"{claim.describe()} - also used by {seen[claim.port].component}")
        elif not port_is_free(claim.port):
            problems.append(f"{claim.describe()} - already in use on {LOOPBACK}")
        seen.setdefault(claim.port, claim)
    if problems:
        raise PortsUnavailable(
            "the local stack cannot bind its ports (nothing was started or changed):\n  "
            + "\n  ".join(problems)
            + "\nexample: make run ARGS='--api-port 18080 --gateway-port 18000 --worker-base-port 18101'"
        )
