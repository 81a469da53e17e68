"""Tasks the executor counts as running but no longer streams, watched in the database.

Two kinds: task instances adopted from a scheduler that stopped, and tasks whose
stream broke after the worker accepted them. Either may still run on a worker
(Knative cannot address the pod that holds it), so the executor keeps their slot
and, from ``sync()``, reads their state in bounded batches (as the Celery and
Edge executors do) until Airflow records the try's end: the task reports it
itself, or Airflow's task heartbeat timeout fails it when the worker is gone.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

log = logging.getLogger("airflow_knative.executor")

#: States in which a try still belongs to the worker that holds it.
STILL_RUNNING = frozenset({"queued", "running", "restarting"})
#: Ended states the scheduler is told about as a failure (its own checks then agree).
FAILED_STATES = frozenset({"failed", "up_for_retry", "upstream_failed"})


class TaskRow(NamedTuple):
    """A task instance's current try and state, as the database holds it."""

    try_number: int
    state: str | None


#: ti_id -> row (missing ids: the task instance was reset or cleared to a new id)
RowLoader = Callable[[list[str]], Mapping[str, TaskRow]]


@dataclass(frozen=True)
class WatchedEnd:
    """A watched try ended: ``state`` is what to report (None: nothing, the try is gone)."""

    key: TaskInstanceKey
    state: str | None


def load_task_rows(ti_ids: list[str]) -> dict[str, TaskRow]:
    """Read the try number and state of the given task instance ids."""
    import uuid

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(TaskInstance.id, TaskInstance.try_number, TaskInstance.state).where(
        TaskInstance.id.in_([uuid.UUID(i) for i in ti_ids])
    )
    with create_session() as session:
        rows = session.execute(query).all()
    return {
        str(ti_id): TaskRow(try_number, None if state is None else str(getattr(state, "value", state)))
        for ti_id, try_number, state in rows
    }


class TaskWatch:
    """The watched tasks, checked at most every ``interval`` seconds, ``batch_size`` at a time."""

    def __init__(
        self, interval: float = 5.0, batch_size: int = 500, load_rows: RowLoader = load_task_rows
    ) -> None:
        self.interval = interval
        self.batch_size = batch_size
        self._load_rows = load_rows
        self._watched: OrderedDict[TaskInstanceKey, str] = OrderedDict()
        self._next_check = 0.0

    def __len__(self) -> int:
        return len(self._watched)

    def __contains__(self, key: object) -> bool:
        return key in self._watched

    def add(self, key: TaskInstanceKey, ti_id: str) -> None:
        """Watch ``key`` (task instance id ``ti_id``) from the next check on."""
        self._watched[key] = ti_id

    def discard(self, key: TaskInstanceKey) -> None:
        """Stop watching ``key``."""
        self._watched.pop(key, None)

    def check(self, now: float | None = None) -> list[WatchedEnd]:
        """Read one batch from the database if a check is due; return the tries that ended."""
        now = time.monotonic() if now is None else now
        if not self._watched or now < self._next_check:
            return []
        self._next_check = now + self.interval
        batch = list(self._watched.items())[: self.batch_size]
        try:
            rows = self._load_rows([ti_id for _, ti_id in batch])
        except Exception:  # the scheduler's own DB checks retry too; try again next interval
            log.warning("cannot read the state of %d watched task(s); retrying", len(batch), exc_info=True)
            return []
        ended = list(self._ended(batch, rows))
        for key, _ in batch:  # rotate: the next check starts with the ones not read now
            if key in self._watched:
                self._watched.move_to_end(key)
        for end in ended:
            self._watched.pop(end.key, None)
        return ended

    @staticmethod
    def _ended(
        batch: Iterable[tuple[TaskInstanceKey, str]], rows: Mapping[str, TaskRow]
    ) -> Iterable[WatchedEnd]:
        for key, ti_id in batch:
            row = rows.get(ti_id)
            if row is None or row.try_number != key.try_number:
                yield WatchedEnd(key, None)  # reset or cleared: that try is over, report nothing
            elif row.state in STILL_RUNNING:
                continue
            elif row.state == "success" or row.state in FAILED_STATES:
                yield WatchedEnd(key, row.state)
            else:  # skipped, deferred, up_for_reschedule, scheduled, removed, ...: the try left the worker
                yield WatchedEnd(key, None)
