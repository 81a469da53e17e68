"""How many workers the local activator starts at once, and which start goes first.

On a cluster every new pod gets the CPU its node reserves for it, so eight services
woken together start in about the time one takes. On one machine eight interpreters
importing Airflow at once share its cores. With a ``limit`` the activator starts at
most that many workers at a time, in the order the DAG needs them: a start a task
waits for (priority 0) before any pre-warm, and a pre-warm of a direct downstream
(priority 1) before one two tasks further down.

Without a limit (the default) every start begins at once. Measured with ``make bench``
on 2 cores, that was faster end to end: ``benchmark_w1_d8`` pre-warmed cold 28.8 s
unbounded against 35.9 and 36.5 s with a limit of 2: eight starting interpreters get
a larger share of the cores next to the scheduler and API server than two do (the
kernel shares CPU per runnable process). The limit is for machines where that
many interpreters at once do not fit in memory, and for studying start order.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

#: Priority of a start a task's request waits for: before every pre-warm.
TASK_WAITS = 0
#: Priority of a pre-warm that did not say its distance: after those that did.
UNKNOWN_DISTANCE = 1_000


@dataclass
class _Waiter:
    key: str
    priority: int
    order: int
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def rank(self) -> tuple[int, int]:
        """Lowest priority number first (0: a task waits), then first come first served."""
        return (self.priority, self.order)


class StartQueue:
    """At most ``limit`` starts in progress; the others wait, lowest priority number first.

    Used from one event loop only (the activator's), so it needs no lock.
    """

    def __init__(self, limit: int | None) -> None:
        """``limit``: most starts in progress at once; None: no limit."""
        if limit is not None and limit < 1:
            raise ValueError(f"the number of workers starting at once must be at least 1, not {limit}")
        self.limit = limit
        self.starting = 0
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> list[str]:
        """Keys of the starts not yet allowed, in the order they will be."""
        return [w.key for w in sorted(self._waiting, key=_Waiter.rank)]

    async def acquire(self, key: str, priority: int) -> None:
        """Wait until ``key`` may start; pair every return with one :meth:`release`.

        ``priority``: 0 when a task waits for the start, else how many tasks ahead of the
        dispatched one the pre-warmed service's task is.
        """
        if self._has_room() and not self._waiting:
            self.starting += 1
            return
        waiter = _Waiter(key, priority, next(self._order))
        self._waiting.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self.release()  # granted just before the cancellation: pass the slot on
            raise

    def promote(self, key: str, priority: int) -> None:
        """``key`` is now wanted sooner (a task waits for it, or a nearer pre-warm): move it ahead."""
        for waiter in self._waiting:
            if waiter.key == key:
                waiter.priority = min(waiter.priority, priority)

    def _has_room(self) -> bool:
        return self.limit is None or self.starting < self.limit

    def release(self) -> None:
        """A start finished (ready or failed): let the next one begin."""
        self.starting -= 1
        while self._has_room() and self._waiting:
            waiter = min(self._waiting, key=_Waiter.rank)
            self._waiting.remove(waiter)
            self.starting += 1
            waiter.granted.set_result(None)
