"""Start-up checks before anything is touched: one stack per --home, free ports, this start's lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def _dev(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``airflow-knative dev`` as `make run` starts it, with the given options."""
    return subprocess.run(
        [sys.executable, "-m", "airflow_knative.cli", "dev", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


#: Files the running first stack itself keeps writing: logs, its database, the live routing table.
_WRITTEN_BY_THE_RUNNING_STACK = (".db", ".db-journal", ".db-wal", ".db-shm", ".yaml", ".lock")


def _state_of(home: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file a start sets up in ``home`` (secrets, settings, config)."""
    return {
        str(path.relative_to(home)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(home.rglob("*"))
        if path.is_file()
        and "logs" not in path.relative_to(home).parts
        and path.suffix not in _WRITTEN_BY_THE_RUNNING_STACK
    }


def test_a_second_start_refuses_at_once_names_the_first_and_changes_nothing(
    running_stack: RunningStack, e2e_dags: Path
) -> None:
    config = running_stack.config
    before = _state_of(config.home)
    migrate_log = config.log_dir / "db-migrate.log"
    migrate_size = migrate_log.stat().st_size

    second = _dev(
        "--home",
        config.home,
        "--dags-folder",
        e2e_dags,
        "--api-port",
        free_port(),
        "--gateway-port",
        free_port(),
        "--worker-base-port",
        free_port(),
    )

    assert second.returncode == 1
    assert "already runs" in second.stderr
    assert f"pid {os.getpid()}" in second.stderr  # the session's stack runs in this process
    assert str(config.api_port) in second.stderr and str(config.gateway_port) in second.stderr
    assert "is up" not in second.stdout
    assert _state_of(config.home) == before, "the second start changed files in --home"
    assert migrate_log.stat().st_size == migrate_size, "the second start ran a database migration"

    response = running_stack.run_workflow("compute_avg", [1, 3])
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 2


def test_a_busy_port_is_named_with_the_option_that_moves_it(tmp_path: Path, e2e_dags: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = _dev(
            "--home",
            home,
            "--dags-folder",
            e2e_dags,
            "--api-port",
            free_port(),
            "--gateway-port",
            port,
            "--worker-base-port",
            free_port(),
        )

    assert result.returncode == 1
    assert f"port {port} (gateway)" in result.stderr
    assert "--gateway-port" in result.stderr and "AIRFLOW_KNATIVE_DEV_GATEWAY_PORT" in result.stderr
    assert not (home / "airflow").exists(), "nothing may be set up before the ports are known to be free"
    assert not (home / "routing.yaml").exists()


def test_make_run_passes_args_to_the_stack(repo_root: Path) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "run", "ARGS=--gateway-port 18000 --workers 3"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "airflow-knative dev --gateway-port 18000 --workers 3" in dry_run.stdout
