"""Return values the executor has seen, kept to send inline to downstream tasks.

Bounded by total size and evicted least-recently-used, so a long-running
scheduler's memory does not grow with the number of runs; a value that was
evicted (or never fit) is simply read through the API by the task.

Each value remembers the try of the task instance that returned it. The
dispatcher forgets a task's value whenever that task is dispatched again and on
every outcome without a value, and only sends a value whose try is the try the
database holds now; so a cleared upstream that re-ran (here or on another
scheduler) never has its old value sent.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_knative.protocol import InlineXCom

#: (dag_id, run_id, task_id, map_index)
ValueKey = tuple[str, str, str, int]
#: (task_id, map_index) -> try_number, the tries that count for one run
CurrentTries = Mapping[tuple[str, int], int]


class ResultCache:
    """An LRU map of task return values with a byte budget, indexed by DAG run."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[ValueKey, tuple[Any, int, int | None]] = OrderedDict()
        self._by_run: defaultdict[tuple[str, str], set[ValueKey]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: ValueKey, value: Any, try_number: int | None = None) -> None:
        """Remember ``value`` returned by try ``try_number``; values larger than the budget are not kept."""
        size = len(json.dumps(value, separators=(",", ":")))
        self._drop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size, try_number)
        self._by_run[key[:2]].add(key)
        self.used_bytes += size
        while self.used_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def forget(self, key: ValueKey) -> None:
        """Drop the value of one task instance (it is being run again, or its try ended without one)."""
        self._drop(key)

    def has_values(self, dag_id: str, run_id: str) -> bool:
        """True when any value of the run is kept."""
        return bool(self._by_run.get((dag_id, run_id)))

    def inline_for(
        self,
        dag_id: str,
        run_id: str,
        upstream_task_ids: Iterable[str],
        budget_bytes: int,
        current_tries: CurrentTries | None = None,
    ) -> list[InlineXCom]:
        """Return the cached values of the given upstream tasks that fit in ``budget_bytes``, in key order.

        With ``current_tries``, a value is returned only if it came from the try listed
        there for its task instance (anything else is stale or unknown).
        """
        wanted = set(upstream_task_ids)
        chosen: list[InlineXCom] = []
        for key in sorted(self._by_run.get((dag_id, run_id), ())):
            value, size, try_number = self._entries[key]
            if key[2] not in wanted or size > budget_bytes:
                continue
            if current_tries is not None and (
                try_number is None or current_tries.get((key[2], key[3])) != try_number
            ):
                continue
            budget_bytes -= size
            self._entries.move_to_end(key)
            chosen.append(InlineXCom(task_id=key[2], map_index=key[3], value=value))
        return chosen

    def _drop(self, key: ValueKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.used_bytes -= entry[1]
        run_keys = self._by_run[key[:2]]
        run_keys.discard(key)
        if not run_keys:
            del self._by_run[key[:2]]
