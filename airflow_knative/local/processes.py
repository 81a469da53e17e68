"""Start, watch and stop the local stack's processes, each with its own log file."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


class StackStartError(RuntimeError):
    """A component did not come up; the message carries the end of its log."""


def log_size(path: Path) -> int:
    """Bytes in ``path`` now (0 if missing): where this start's lines of an appended log begin."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, lines: int = 25, since: int = 0) -> str:
    """Return the last lines written to a log file after byte ``since``, for error messages.

    Logs are appended across starts; reading from the size the file had when this
    start began keeps an earlier start's lines out of the message.
    """
    try:
        with path.open("rb") as log_file:
            log_file.seek(since)
            text = log_file.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing written in this start)"


@dataclass
class Component:
    """One running process of the stack."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health_url: str | None = None
    log_start: int = 0

    def check_alive(self) -> None:
        """Raise with the lines the process wrote in this start if it has exited."""
        code = self.process.poll()
        if code is not None:
            raise StackStartError(
                f"{self.name} exited with code {code}; "
                f"its last lines in {self.log_path}:\n{log_tail(self.log_path, since=self.log_start)}"
            )


@dataclass
class ProcessGroup:
    """The processes of one stack, stopped together and in reverse start order."""

    log_dir: Path
    components: list[Component] = field(default_factory=list)

    def start(
        self, name: str, command: list[str], env: dict[str, str], health_url: str | None = None
    ) -> Component:
        """Start ``command`` with its output in ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_start = log_size(log_path)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the components in order
                preexec_fn=die_with_parent,  # noqa: PLW1509  # prctl only; started from one thread
            )
        component = Component(name, process, log_path, health_url, log_start)
        self.components.append(component)
        return component

    def wait_healthy(self, timeout: float) -> None:
        """Wait until every component with a health URL answers 200."""
        pending = [c for c in self.components if c.health_url]
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for component in list(pending):
                    component.check_alive()
                    if answers_ok(component.health_url or "", client):
                        pending.remove(component)
                if pending and time.monotonic() > deadline:
                    tails = "\n".join(
                        f"{c.name} ({c.health_url}), its last lines in {c.log_path}:\n"
                        f"{log_tail(c.log_path, lines=10, since=c.log_start)}"
                        for c in pending
                    )
                    raise StackStartError(f"not healthy after {timeout:.0f}s:\n{tails}")
                time.sleep(0.2)

    def check_alive(self) -> None:
        """Raise if any component has exited."""
        for component in self.components:
            component.check_alive()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every process group (newest first), then SIGKILL what is left after ``grace``."""
        for component in reversed(self.components):
            _signal_group(component.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in reversed(self.components):
            try:
                component.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(component.process, signal.SIGKILL)
                component.process.wait(5)
        for component in self.components:  # children of a stopped leader (e.g. API server workers)
            _signal_group(component.process, signal.SIGKILL)
        self.components.clear()


def worker_command(
    *,
    port: int,
    name: str,
    secret_file: Path | str,
    concurrency: int = 1,
    host: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one local ``airflow-knative worker`` (the stack's, the activator's, tests')."""
    return [
        sys.executable,
        "-m",
        "airflow_knative.cli",
        "worker",
        "--host",
        host,
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--name",
        name,
        "--secret-file",
        str(secret_file),
        *extra,
    ]


def die_with_parent() -> None:
    """Have Linux send SIGTERM to a component if the stack process dies without stopping it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: Ctrl-C and stop() still stop everything
        pass


def answers_ok(url: str, client: httpx.Client | None = None) -> bool:
    """Whether ``url`` answers 200 now (health and readiness probes); no answer is False."""
    try:
        response = client.get(url) if client is not None else httpx.get(url)
    except httpx.TransportError:
        return False
    return response.status_code == 200


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def wait_until(
    condition: Callable[[], T], timeout: float, what: str = "the condition", interval: float = 0.5
) -> T:
    """Poll ``condition`` until it returns something truthy and return that.

    Raises :class:`StackStartError` naming ``what`` on time-out.
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise StackStartError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return result
