"""How many workers the local activator starts at once, and which start goes first.

On a cluster every new pod gets the CPU its node reserves for it, so eight services
woken together start in about the time one takes. On one machine eight interpreters
importing Airflow at once share its cores: each start takes eight times as long,
including the one a task is waiting for right now. The activator therefore starts at
most ``limit`` workers at a time (by default one per CPU) and lets a start wanted by a
task overtake starts wanted only by a pre-warm, so pre-warming downstream services
never delays the service the DAG needs first.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    key: str
    urgent: bool
    order: int
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def rank(self) -> tuple[bool, int]:
        """Urgent (a task waits) before pre-warm, then first come first served."""
        return (not self.urgent, self.order)


class StartQueue:
    """At most ``limit`` starts in progress; the others wait, urgent ones first.

    Used from one event loop only (the activator's), so it needs no lock.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the number of workers starting at once must be at least 1, not {limit}")
        self.limit = limit
        self.starting = 0
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> list[str]:
        """Keys of the starts not yet allowed, in the order they will be."""
        return [w.key for w in sorted(self._waiting, key=_Waiter.rank)]

    async def acquire(self, key: str, urgent: bool) -> None:
        """Wait until ``key`` may start; pair every return with one :meth:`release`."""
        if self.starting < self.limit and not self._waiting:
            self.starting += 1
            return
        waiter = _Waiter(key, urgent, next(self._order))
        self._waiting.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self.release()  # granted just before the cancellation: pass the slot on
            raise

    def make_urgent(self, key: str) -> None:
        """A task now waits for ``key``, which so far only a pre-warm wanted: move it ahead."""
        for waiter in self._waiting:
            if waiter.key == key:
                waiter.urgent = True

    def release(self) -> None:
        """A start finished (ready or failed): let the next one begin."""
        self.starting -= 1
        while self.starting < self.limit and self._waiting:
            waiter = min(self._waiting, key=_Waiter.rank)
            self._waiting.remove(waiter)
            self.starting += 1
            waiter.granted.set_result(None)
