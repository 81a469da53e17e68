"""A throwaway PostgreSQL cluster on 127.0.0.1 for the benchmark (Debian package, no system service).

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
user (created by the Debian package) and lives in a temporary folder it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow_knative.local.ports import reserve_ports

SERVER_SETTINGS = {"listen_addresses": "127.0.0.1", "max_connections": "300"}


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is missing and cannot be installed, or did not start."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_installed() -> Path:
    """Return the folder holding ``initdb``/``pg_ctl``, installing Debian's postgresql as root if needed."""
    try:
        import asyncpg  # noqa: F401  # Airflow 3 opens an async engine next to the sync one
    except ImportError as exc:
        raise PostgresUnavailableError(
            "Airflow needs asyncpg for PostgreSQL: run `make bench-deps` (pip install asyncpg)"
        ) from exc
    bin_dir = _bin_dir()
    if bin_dir is not None:
        return bin_dir
    if os.geteuid() != 0:
        raise PostgresUnavailableError(
            "PostgreSQL is not installed and this is not root: run "
            "`sudo apt-get update && sudo apt-get install -y postgresql` and retry"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0:
            raise PostgresUnavailableError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError("postgresql was installed but initdb was not found")
    return bin_dir


@dataclass
class TempPostgres:
    """``initdb`` + ``pg_ctl start`` in a temp folder; :meth:`stop` removes everything."""

    bin_dir: Path
    port: int = 0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-pg-")))
    user: str = ""
    version: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, command: list[str], timeout: float = 120.0) -> str:
        result = subprocess.run(
            self._as_owner(command), capture_output=True, text=True, check=False, timeout=timeout
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"{command[0]} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}"
            )
        return result.stdout

    def start(self) -> None:
        """Create and start the cluster on a free port in 30000-30999."""
        self.port = self.port or reserve_ports()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.user = "postgres"
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", self.user])
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.root / "server.log"),
                "-o", f"-p {self.port} -k {self.root} {options}",
                "-w", "-t", "60",
                "start",
            ]
        )  # fmt: skip
        self.version = self._run([str(self.bin_dir / "postgres"), "--version"]).strip()

    def url(self, database: str) -> str:
        """SQLAlchemy URL of one database of this server."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` (dropping any leftover) and return its URL."""
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.data_dir.exists() and (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailableError, subprocess.TimeoutExpired):
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
                )
        shutil.rmtree(self.root, ignore_errors=True)


def start_temp_postgres() -> TempPostgres:
    """Install PostgreSQL if needed and start a throwaway server (the benchmarks' and fault tests' database).

    Raises :class:`PostgresUnavailableError` when it cannot be installed or started; stop it with
    :meth:`TempPostgres.stop`.
    """
    server = TempPostgres(ensure_installed())
    server.start()
    return server
