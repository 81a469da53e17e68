"""The README is the configuration reference: its option table is the one the declaration renders."""

from __future__ import annotations

from tests.conftest import REPO_ROOT
from tools.readme_config import main as readme_config


def test_executor_option_table_is_generated_from_the_settings_declaration(capsys) -> None:  # type: ignore[no-untyped-def]
    """Fails when an option was added or changed in airflow_knative/settings.py: run `make readme-config`."""
    stale = readme_config(["--readme", str(REPO_ROOT / "README.md"), "--check"])

    assert stale == 0, capsys.readouterr().err


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
