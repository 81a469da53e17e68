"""Which upstream values may travel inline with a task, decided exactly.

Two things make inline values exact rather than best effort:

* **The try that counts.** Before sending cached values, the dispatcher reads the
  upstream task instances' current ``try_number`` and state from the database (one
  indexed query, off the event loop). A value is sent only if it came from that
  try, so a cleared upstream that re-ran elsewhere, or returned nothing, never has
  an old value served.
* **Streams that are finishing.** The scheduler queues a downstream task as soon
  as the upstream's state in the database is final, which can be a moment before
  the worker's ``finished`` event (carrying the value) has been read here. When an
  upstream's stream is still open on this dispatcher but the database already
  shows that try as ended, the dispatcher waits briefly (``inline_wait_timeout``)
  for that event instead of racing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from airflow_knative.executor.result_cache import ValueKey

log = logging.getLogger(__name__)

#: States in which a task instance's try has ended (its return value, if any, is stored).
ENDED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "up_for_retry", "removed"})


class UpstreamTry(NamedTuple):
    """What the database says about one upstream task instance right now."""

    try_number: int
    state: str | None


#: (task_id, map_index) -> the upstream task instance's current try and state
UpstreamTries = Mapping[tuple[str, int], UpstreamTry]


def load_upstream_tries(
    dag_id: str, run_id: str, task_ids: Iterable[str]
) -> dict[tuple[str, int], UpstreamTry]:
    """Read the current try and state of task instances of one DAG run (blocking: run in a thread)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = sorted(set(task_ids))
    query = select(
        TaskInstance.task_id, TaskInstance.map_index, TaskInstance.try_number, TaskInstance.state
    ).where(
        TaskInstance.dag_id == dag_id,
        TaskInstance.run_id == run_id,
        TaskInstance.task_id.in_(wanted),
    )
    with create_session() as session:
        rows = session.execute(query).all()
    return {
        (task_id, map_index): UpstreamTry(
            try_number, None if state is None else str(getattr(state, "value", state))
        )
        for task_id, map_index, try_number, state in rows
    }


@dataclass
class OpenStreams:
    """The task instances this dispatcher is running right now, with an event set when each ends.

    Owned by the dispatcher's event loop (not thread-safe). The event is set after
    the task's return value (if any) is in the result cache.
    """

    _open: dict[ValueKey, tuple[int, asyncio.Event]] = field(default_factory=dict)

    def begin(self, key: ValueKey, try_number: int) -> asyncio.Event:
        """Note that ``key``'s try ``try_number`` is being dispatched; return its end event."""
        done = asyncio.Event()
        self._open[key] = (try_number, done)
        return done

    def end(self, key: ValueKey, done: asyncio.Event) -> None:
        """Mark the stream ended (whatever its outcome) and wake whoever waits for it."""
        current = self._open.get(key)
        if current is not None and current[1] is done:
            del self._open[key]
        done.set()

    def any_of(self, dag_id: str, run_id: str, task_ids: frozenset[str]) -> bool:
        """True when a stream of one of ``task_ids`` in this run is open."""
        return any(k[0] == dag_id and k[1] == run_id and k[2] in task_ids for k in self._open)

    def finishing(
        self, dag_id: str, run_id: str, task_ids: frozenset[str], tries: UpstreamTries
    ) -> list[asyncio.Event]:
        """End events of open streams whose try the database already shows as ended."""
        events = []
        for (dag, run, task_id, map_index), (try_number, done) in self._open.items():
            if dag != dag_id or run != run_id or task_id not in task_ids:
                continue
            now = tries.get((task_id, map_index))
            if now is not None and now.try_number == try_number and now.state in ENDED_STATES:
                events.append(done)
        return events


async def wait_for_all(events: list[asyncio.Event], timeout: float) -> bool:
    """Wait until every event is set or ``timeout`` passes; True when all were set."""
    if not events:
        return True
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    _, pending = await asyncio.wait(waiters, timeout=timeout)
    for waiter in pending:
        waiter.cancel()
    return not pending
