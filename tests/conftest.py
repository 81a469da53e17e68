"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_knative.local.ports import reserve_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / "workflows"
SHARED = REPO_ROOT.parent / "shared"


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1, outside the ephemeral range.

    Not ``bind(0)``: such a port is one the stack's own outgoing connections may take
    before the server that was given it binds (see :mod:`airflow_knative.local.ports`).
    """
    return reserve_ports(count)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return REPO_ROOT
