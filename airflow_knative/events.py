"""Structured event lines: how components log what the benchmarks and tests read back.

The worker, the executor and the dispatcher write one JSON object per event into
their ordinary logs; :func:`read_events` finds them again in a log file. Writing
and reading live together so the format has one definition.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def log_event(logger: logging.Logger | Any, event: str, **fields: Any) -> None:
    """Log ``{"event": event, "ts": <now>, **fields}`` as one JSON line at INFO (any logger with ``info``)."""
    logger.info("%s", json.dumps({"event": event, "ts": time.time(), **fields}, default=str))


def read_events(path: Path, event: str) -> Iterator[dict[str, Any]]:
    """Yield the ``event`` records logged into the file at ``path`` (none if it does not exist).

    Log formatters wrap the JSON in a prefix and suffix, so the object is cut out
    between the first ``{`` and the last ``}`` of the line.
    """
    if not path.exists():
        return
    marker = json.dumps({"event": event})[1:-1]
    for line in path.read_text(errors="replace").splitlines():
        if marker not in line:
            continue
        try:
            yield json.loads(line[line.index("{") : line.rindex("}") + 1])
        except ValueError:
            continue
