"""Where the warm overhead goes: marks read from the task process's own log, as Airflow writes it."""

from __future__ import annotations

import json
from pathlib import Path

from bench.worker_overhead import WARM_PHASES, _phases, _task_log_marks

RUN = "manual__2026-12-07T02:56:55.320211+00:00"
# The lines Airflow 3.3's task runner writes for a bench_probe task (trimmed), in order.
TASK_LOG = [
    {"timestamp": "2026-12-07T02:56:55.517893Z", "event": "::group::Pre Execute"},
    {"timestamp": "2026-12-07T02:56:55.545352Z", "event": "DAG bundles loaded: dags-folder"},
    {"timestamp": "2026-12-07T02:56:55.546216Z", "event": "Worker startup parse complete"},
    {"timestamp": "2026-12-07T02:56:55.599015Z", "event": "::endgroup::"},
    {"timestamp": "2026-12-07T02:56:55.603313Z", "event": "Done. Returned value was: 1796612215.6031897"},
    {"timestamp": "2026-12-07T02:56:55.683035Z", "event": "::endgroup::"},
]
RECEIVED = 1796612215.448666


def _write_log(log_dir: Path) -> None:
    folder = log_dir / "tasks" / "dag_id=bench_probe_warm" / f"run_id={RUN}" / "task_id=probe"
    folder.mkdir(parents=True)
    text = "\n".join(json.dumps(line) for line in TASK_LOG) + "\nnot json\n"
    (folder / "attempt=1.log").write_text(text)


def test_each_mark_is_measured_from_the_request_received(tmp_path: Path) -> None:
    _write_log(tmp_path)
    row = {"received_at": RECEIVED, "task_code_at": 1796612215.6031897}

    phases = _phases(row, _task_log_marks(tmp_path, "bench_probe_warm", RUN), RECEIVED + 0.079368)

    assert list(phases) == list(WARM_PHASES)
    rounded = {name: round(seconds * 1000, 1) for name, seconds in phases.items()}
    assert rounded == {
        "task_process_running": 69.2,
        "run_answered": 79.4,
        "dag_ready": 97.5,
        "pre_execute_done": 150.3,  # the first ::endgroup::, not the one after the task code
        "task_code": 154.5,
    }


def test_a_missing_task_log_leaves_only_the_workers_own_marks(tmp_path: Path) -> None:
    row = {"received_at": RECEIVED, "task_code_at": RECEIVED + 0.1}

    phases = _phases(row, _task_log_marks(tmp_path, "bench_probe_warm", RUN), None)

    assert set(phases) == {"task_code"}
