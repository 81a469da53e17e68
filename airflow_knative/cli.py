"""``airflow-knative``: one console script, one sub-command per component.

Each component package has a ``cli`` module with ``add_arguments(parser)`` and
``run(args) -> int``; this module only wires them together and imports a
component when its command runs (the worker imports Airflow, the gateway does not
need to).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "worker": (
        "airflow_knative.worker.cli",
        "Serve task workloads over HTTP (runs inside each Knative service).",
    ),
    "gateway": (
        "airflow_knative.gateway.cli",
        "Serve POST /runWorkflow/<dag_id> in front of the Airflow API.",
    ),
    "dev": ("airflow_knative.local.cli", "Run the whole stack on this machine (what `make run` starts)."),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every sub-command's options."""
    parser = argparse.ArgumentParser(
        prog="airflow-knative", description="Airflow 3 tasks on pre-warmed, autoscaled Knative services."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sub)
        sub.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airflow-knative`` console script."""
    args = build_parser().parse_args(argv)
    result: int = importlib.import_module(args.module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
