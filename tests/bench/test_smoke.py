"""Smoke test of the benchmark harness: one tiny DAG, one run per system, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


# Four stacks start (two side by side, then two scale-to-zero ones): on a shared, loaded
# 2-core machine this has taken over ten minutes, the suite's default limit.
@pytest.mark.timeout(1800)
def test_harness_runs_both_systems_and_writes_results(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench",
        "--profile",
        "smoke",
        "--sections",
        "e2e,coldstart,dispatch,routing",
        "--database",
        "auto",  # PostgreSQL when it can be installed/started, else SQLite (reported below)
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1700, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run_dir = tmp_path / "latest"
    results = json.loads((run_dir / "results.json").read_text())
    if results["database"]["kind"] != "postgresql":
        warnings.warn(f"benchmark smoke test fell back to {results['database']['description']}", stacklevel=1)

    runs = [r for r in results["e2e"]["runs"] if r["phase"] == "measure"]
    assert sorted(r["system"] for r in runs) == ["knative", "local"]
    for run in runs:
        assert run["dag_id"] == "compute_avg_distributed"
        assert run["state"] == "success", run
        assert run["correct"], run
        assert run["client_s"] > 0
        assert run["task_instances"], run
    assert results["failed_runs_total"] == 0
    knative_rows = results["per_task"]["knative"]["task_instances"]
    assert {row["task_id"] for row in knative_rows} == {"extract", "compute_sum", "compute_count", "do_avg"}
    assert all("dispatched_at" in row and "reported_at" in row for row in knative_rows)
    assert results["dispatch"]["completed"] == results["dispatch"]["workloads"]
    assert results["dispatch"]["cpu"]["client_s"] > 0  # which side limits the dispatch rate
    _check_scale_to_zero_and_prewarm(results["coldstart"])
    routing = results["routing"]  # the real generator and helm, on 5 DAGs x 10 tasks
    assert set(routing["modes"]) == {"knative", "deployment"}
    assert all(mode["routing_bytes"] > 0 for mode in routing["modes"].values())
    assert "routing data for 50 tasks" in (run_dir / "summary.md").read_text()
    for name in ("summary.md", "latency_vs_depth.png", "throughput_vs_width.png", "e2e_headline.png"):
        assert (run_dir / name).stat().st_size > 0, name


def _check_scale_to_zero_and_prewarm(cold: dict[str, Any]) -> None:
    """Workers started on demand behind the activator; pre-warm woke services and ran no task."""
    runs = cold["runs"]
    assert {(r["system"], r["phase"]) for r in runs} == {
        (system, phase) for system in ("prewarm", "no_prewarm") for phase in ("cold", "warm")
    }
    for run in runs:
        assert run["correct"], run
        # each task ran once: a pre-warm request never runs one, a held request is not resent
        assert all(ti["try_number"] == 1 and ti["state"] == "success" for ti in run["task_instances"]), run
    starts = cold["cold_starts"]
    assert starts["no_prewarm"], "the scale-to-zero stack started no worker on demand"
    assert all(s["woken_by"] == "POST /v1/workloads" for s in starts["no_prewarm"])
    assert any(s["woken_by"] == "GET /readyz" for s in starts["prewarm"]), starts["prewarm"]
    assert cold["prewarm_requests"]["prewarm"] > 0
    assert cold["prewarm_requests"]["no_prewarm"] == 0
