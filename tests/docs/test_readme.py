"""The README and docs/gateway.md are the configuration reference: their option tables are generated."""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT
from tools.docs_tables import main as docs_tables


def test_option_tables_are_generated_from_their_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    """Fails when an option was added or changed without `make docs-tables`."""
    stale = docs_tables(["--root", str(REPO_ROOT), "--check"])

    assert stale == 0, capsys.readouterr().err


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
