"""The installed package is an Airflow provider: the real ``airflow`` CLI shows it and its options."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_knative import __version__
from airflow_knative.provider_info import PACKAGE_NAME
from airflow_knative.settings import SECTION, option_specs

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh AIRFLOW_HOME and no [knative_executor] option set in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(f"AIRFLOW__{SECTION.upper()}__")}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    return env


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_providers_list_shows_the_provider_with_its_version(airflow_env: dict[str, str]) -> None:
    result = airflow(airflow_env, "providers", "list")

    assert re.search(
        rf"^{re.escape(PACKAGE_NAME)}\s+\|.*\|\s*{re.escape(__version__)}\s*$", result.stdout, re.M
    )
    # The provider declares its (empty) CLI, so Airflow does not fall back to importing the executor.
    assert "missing 'cli' section" not in result.stdout + result.stderr


def test_config_list_shows_every_option_with_description_example_and_variable(
    airflow_env: dict[str, str],
) -> None:
    result = airflow(airflow_env, "config", "list", "--section", SECTION, "--defaults", "--include-env-vars")
    out = result.stdout

    assert f"[{SECTION}]" in out
    for option in option_specs():
        first_line = option.description.splitlines()[0]
        assert f"# {first_line}" in out, f"{option.name}: description missing"
        assert f"# Example: {option.name} = {option.example}" in out
        assert f"# Variable: {option.env_var()}" in out


def test_airflow_knows_each_default(airflow_env: dict[str, str]) -> None:
    result = airflow(airflow_env, "config", "list", "--section", SECTION, "--show-values")
    shown = dict(re.findall(r"^(\w+) = (.*)$", result.stdout, re.M))

    for option in option_specs():
        if option.required:
            assert f"# {option.name} = " in result.stdout  # no default: listed, commented out
        else:
            assert shown[option.name] == option.default_text, option.name
