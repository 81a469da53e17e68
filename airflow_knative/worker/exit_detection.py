"""Notice a finished task process in milliseconds rather than up to five seconds.

Airflow's supervisor waits in ``select()`` on the task's sockets. When the last
socket closes a moment before the process can be reaped, the supervisor finds
the process still alive and, with no socket left to wake it, sleeps for the
whole heartbeat interval (``[workers] min_heartbeat_interval``, 5 s) before
looking again. A process-per-task executor hides that behind its own start-up
cost; a warm worker would pay it on most tasks (measured: most tasks took
5.3-6.2 s in the supervisor instead of 0.3-0.6 s).

The fix is narrow: once the task has reported its final state (or no socket is
left), poll for the exit every :data:`EXIT_POLL_INTERVAL` seconds. Heartbeats and
everything else are unchanged.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

EXIT_POLL_INTERVAL = 0.005
_MARK = "_airflow_knative_fast_exit"


def install_fast_exit_detection() -> bool:
    """Wrap ``WatchedSubprocess._service_subprocess``; return False if Airflow's shape changed."""
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    original = getattr(WatchedSubprocess, "_service_subprocess", None)
    if original is None:
        log.warning("Airflow's supervisor has no _service_subprocess; fast exit detection not installed")
        return False
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    def service_subprocess(self: Any, max_wait_time: float, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_terminal_state", None) or not getattr(self, "_open_sockets", True):
            max_wait_time = min(max_wait_time, EXIT_POLL_INTERVAL)
        return original(self, max_wait_time, *args, **kwargs)

    setattr(service_subprocess, _MARK, True)
    WatchedSubprocess._service_subprocess = service_subprocess  # type: ignore[method-assign]
    return True
