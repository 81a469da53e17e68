"""What Airflow's ``ProvidersManager`` learns about this package (``apache_airflow_provider`` entry point).

Registering as a provider makes the executor and its ``[knative_executor]``
section visible to ``airflow providers list`` and ``airflow config list``, with
each option's description, type, default and example, and makes Airflow itself
know the defaults. The section is derived from :class:`~airflow_knative.settings.ExecutorSettings`,
so a new option appears here the moment it is declared there.
"""

from __future__ import annotations

from typing import Any

from airflow_knative import __version__
from airflow_knative.settings import SECTION, option_specs

PACKAGE_NAME = "airflow-knative"
EXECUTOR_CLASS = "airflow_knative.executor.KnativeExecutor"


def config_section() -> dict[str, Any]:
    """The ``[knative_executor]`` section in the form of Airflow's ``provider_info.schema.json``."""
    return {
        "description": (
            "The KnativeExecutor sends each task to the Knative service that serves it, over HTTP. "
            f"Enable it with [core] executor = {EXECUTOR_CLASS}."
        ),
        "options": {
            option.name: {
                "description": option.description,
                "version_added": None,
                "type": option.airflow_type,
                "example": option.example,
                "default": option.default_text,
            }
            for option in option_specs()
        },
    }


def get_cli_commands() -> list[Any]:
    """The executor adds no ``airflow`` sub-commands.

    Declaring that (the provider info's ``cli`` entry) spares every ``airflow``
    command Airflow's fallback of importing the executor class to ask it, and the
    warning that comes with the fallback.
    """
    return []


def get_provider_info() -> dict[str, Any]:
    """Provider info as Airflow's ``ProvidersManager`` reads it from the entry point."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Knative",
        "description": "Run Apache Airflow 3 tasks on pre-warmed, autoscaled Knative services.",
        "versions": [__version__],
        "executors": [EXECUTOR_CLASS],
        "cli": [f"{__name__}.get_cli_commands"],
        "config": {SECTION: config_section()},
    }
