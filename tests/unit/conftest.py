"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from bench.workloads import WorkloadFactory, build_workload


@pytest.fixture
def make_workload() -> WorkloadFactory:
    """Factory for ``ExecuteTask`` workloads (see :func:`build_workload`)."""
    return build_workload
