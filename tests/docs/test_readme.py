"""The README is the configuration reference: it must list every option with its real default."""

from __future__ import annotations

import dataclasses
import re

from airflow_knative.settings import REQUIRED_OPTIONS, ExecutorSettings
from tests.conftest import REPO_ROOT


def _readme_option_rows() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    return dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE))


def test_every_executor_option_is_documented_with_its_default() -> None:
    rows = _readme_option_rows()
    for option in dataclasses.fields(ExecutorSettings):
        assert option.name in rows, f"README lacks [knative_executor] {option.name}"
        documented = rows[option.name].strip()
        if option.name in REQUIRED_OPTIONS:
            expected = "(required)"
        else:
            expected = "(empty)" if option.default == "" else f"`{option.default!r}`"
        assert documented == expected, f"{option.name}: README says {documented}, code says {expected}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
