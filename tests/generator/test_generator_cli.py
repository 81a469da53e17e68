"""`make generate` / `python -m generator`: real DAG parsing, determinism, staleness, failure modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from airflow_knative.naming import service_name

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "chart" / "files" / "services.yaml"


def generate(tmp_path: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home")}
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def dag_file(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body))


SIMPLE = """
    from datetime import timedelta
    from airflow.sdk import dag, task

    @dag(dag_id="{dag_id}", schedule=None,
         default_args={{"executor_config": {{"knative": {{"min_scale": 1}}}}}})
    def build():
        @task(executor_config={{"knative": {{"max_scale": 4, "container_concurrency": 2}}}},
              execution_timeout=timedelta(minutes=2))
        def first():
            return 1

        @task
        def second(x):
            return x

        second(first())

    build()
"""


@pytest.fixture
def dags(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    dag_file(folder, "simple.py", SIMPLE.format(dag_id="simple"))
    return folder


def test_committed_chart_data_is_current(tmp_path: Path) -> None:
    """`make generate-check` on main: the committed chart matches workflows/."""
    result = generate(tmp_path, "--check")
    assert result.returncode == 0, result.stderr


def test_generate_reads_dag_settings_and_is_deterministic(tmp_path: Path, dags: Path) -> None:
    output = tmp_path / "services.yaml"
    first = generate(tmp_path, "--dag-folder", str(dags), "--output", str(output))
    assert first.returncode == 0, first.stderr
    text = output.read_text()
    assert text.startswith("# GENERATED FILE - DO NOT EDIT.")
    assert "make generate" in text.splitlines()[1]
    services = yaml.safe_load(text)["services"]
    assert services[service_name("simple", "first")] == {
        "tasks": [{"dagId": "simple", "taskId": "first"}],
        "minScale": 1,  # default_args, merged beneath the task's own keys
        "maxScale": 4,
        "containerConcurrency": 2,
        "timeoutSeconds": 180,  # execution_timeout + 60 s margin
    }
    assert services[service_name("simple", "second")] == {
        "tasks": [{"dagId": "simple", "taskId": "second"}],
        "minScale": 1,
    }
    mtime = output.stat().st_mtime_ns
    second = generate(tmp_path, "--dag-folder", str(dags), "--output", str(output))
    assert second.returncode == 0 and "unchanged" in second.stdout
    assert output.read_text() == text and output.stat().st_mtime_ns == mtime


def test_check_fails_after_a_dag_change_until_regenerated(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows", folder, ignore=shutil.ignore_patterns("__pycache__"))
    output = tmp_path / "services.yaml"
    args = ("--dag-folder", str(folder), "--output", str(output))
    assert generate(tmp_path, *args).returncode == 0
    assert generate(tmp_path, *args, "--check").returncode == 0
    dag_file(folder, "added.py", SIMPLE.format(dag_id="added_later"))
    stale = generate(tmp_path, *args, "--check")
    assert stale.returncode == 1
    assert "stale" in stale.stderr and "make generate" in stale.stderr
    assert service_name("added_later", "first") in stale.stderr  # the diff shows what changed
    assert generate(tmp_path, *args).returncode == 0
    assert generate(tmp_path, *args, "--check").returncode == 0


def test_import_error_names_the_file_and_writes_nothing(tmp_path: Path, dags: Path) -> None:
    output = tmp_path / "services.yaml"
    assert generate(tmp_path, "--dag-folder", str(dags), "--output", str(output)).returncode == 0
    before = output.read_bytes()
    dag_file(dags, "broken.py", "from airflow.sdk import dag\nimport does_not_exist_anywhere\n")
    dag_file(dags, "more.py", SIMPLE.format(dag_id="more"))
    result = generate(tmp_path, "--dag-folder", str(dags), "--output", str(output))
    assert result.returncode == 2
    assert "broken.py" in result.stderr and "does_not_exist_anywhere" in result.stderr
    assert "nothing written" in result.stderr
    assert output.read_bytes() == before
    assert sorted(p.name for p in output.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_invalid_explicit_service_name_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    dag_file(
        folder,
        "bad_name.py",
        """
        from airflow.sdk import dag, task

        @dag(dag_id="bad_name", schedule=None)
        def build():
            @task(executor_config={"knative": {"service": "Not_A_Valid_Name"}})
            def only():
                return 1
            only()

        build()
        """,
    )
    output = tmp_path / "services.yaml"
    result = generate(tmp_path, "--dag-folder", str(folder), "--output", str(output))
    assert result.returncode == 2
    assert "bad_name.only" in result.stderr and "Not_A_Valid_Name" in result.stderr
    assert not output.exists()


def test_stale_overrides_in_values_files_are_pointed_out(tmp_path: Path, dags: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("# mine\nworkers:\n  overrides:\n    gone-task-abcdefgh:\n      minScale: 2\n")
    output = tmp_path / "services.yaml"
    result = generate(tmp_path, "--dag-folder", str(dags), "--output", str(output), "--values", str(values))
    assert result.returncode == 0
    assert f"{values}:4: workers.overrides.gone-task-abcdefgh" in result.stderr
    assert values.read_text().startswith("# mine"), "values files are never rewritten"
