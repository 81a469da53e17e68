"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.workloads import WorkloadFactory, build_workload
from tests.unit.test_dispatcher import Harness


@pytest.fixture
def make_workload() -> WorkloadFactory:
    """Factory for ``ExecuteTask`` workloads (see :func:`build_workload`)."""
    return build_workload


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """Dispatchers and stub workers of one test, stopped at its end (dispatcher and metrics tests)."""
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()
