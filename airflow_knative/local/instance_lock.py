"""One local stack per ``--home``: an exclusive lock that names the stack holding it.

The lock is an ``fcntl`` lock on ``<home>/stack.lock``. The kernel drops it when
the holding process exits however it exits (Ctrl-C, SIGKILL, a crash), so a dead
stack never blocks the next start; the pid and ports written into the file only
serve the message that tells a second start which stack is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

LOCK_FILE_NAME = "stack.lock"


class StackAlreadyRunning(RuntimeError):
    """Another stack holds ``--home``; the message names its pid and ports."""


class InstanceLock:
    """The exclusive claim of one stack process on its home folder."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE_NAME
        self._file: IO[str] | None = None

    def acquire(self, owner: dict[str, Any]) -> None:
        """Take the lock at once or raise :class:`StackAlreadyRunning`; then record ``owner``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            raise StackAlreadyRunning(_describe_holder(self.path.parent, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), **owner}))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the lock up (the file stays; an unlocked file means no stack runs)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            self._file.close()
            self._file = None


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe_holder(home: Path, holder: dict[str, Any]) -> str:
    ports = holder.get("ports") or {}
    where = ", ".join(f"{name} {port}" for name, port in ports.items())
    return (
        f"a local stack already runs with --home {home} (pid {holder.get('pid', '?')}"
        f"{'; ' + where if where else ''}): use that one, stop it (Ctrl-C in its terminal, "
        f"or kill {holder.get('pid', '<pid>')}), or start another with a different --home and ports"
    )
