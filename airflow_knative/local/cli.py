"""``airflow-knative dev``: options of the local stack, declared once in :class:`StackConfig`."""

from __future__ import annotations

import argparse

from airflow_knative import options
from airflow_knative.local.config import StackConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the local stack's options (all have defaults: `make run` passes none)."""
    options.add_arguments(parser, StackConfig)


def run(args: argparse.Namespace) -> int:
    """Start everything, print how to call it, stop everything on Ctrl-C."""
    from airflow_knative.local.stack import run_until_interrupted

    return run_until_interrupted(args)
