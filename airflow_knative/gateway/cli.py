"""``airflow-knative gateway``: options of the workflow gateway (declared in gateway/settings.py).

Only the standard library is imported here: the top-level CLI builds every
sub-command's parser, and the gateway's server stack is imported when it runs.
"""

from __future__ import annotations

import argparse
import sys

from airflow_knative import options
from airflow_knative.gateway.settings import GatewaySettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the gateway's options; each has an environment variable for containers."""
    options.add_arguments(parser, GatewaySettings)


def run(args: argparse.Namespace) -> int:
    """Serve the gateway until SIGINT/SIGTERM."""
    from airflow_knative.gateway.server import serve

    try:
        settings = GatewaySettings.from_args(args)
    except ValueError as exc:
        print(f"airflow-knative gateway: {exc}", file=sys.stderr)
        return 2
    return serve(settings)
