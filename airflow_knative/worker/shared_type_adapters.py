"""Pydantic type adapters that Airflow's task process would otherwise build again for every task.

Each task process builds the same pydantic ``TypeAdapter`` objects on its way to
the task code: two for the messages its supervisor sends (``ToTask``, a union of
every message type, in ``CommsDecoder``), and one per templated field when it
stores the rendered fields (``JsonValue``). Building one means generating its
validation schema: milliseconds of CPU each, on every task, on the critical path
(measured per task process: about a third of its start before it reads its first
message, and 2-3 ms for the rendered fields of a ``@task``).

:func:`install` builds those adapters once, in the warm worker, and has the two
Airflow modules that build them per task take the built ones instead. A
``TypeAdapter`` holds no state of its own after it is built, so sharing one is
what pydantic recommends; task processes forked from the worker inherit them.
Only these exact type objects are shared; every other ``TypeAdapter(...)`` call in
those modules builds its own as before. If a future Airflow renames what is
patched here, nothing is patched and the task process behaves as stock.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from pydantic import TypeAdapter

log = logging.getLogger(__name__)

_shared: dict[int, tuple[Any, TypeAdapter[Any]]] = {}


def shared_type_adapter(type_: Any, *args: Any, **kwargs: Any) -> TypeAdapter[Any]:
    """``TypeAdapter(type_)``: the one built by :func:`install` for a shared type, else a new one."""
    if not args and not kwargs:
        hit = _shared.get(id(type_))
        if hit is not None and hit[0] is type_:
            return hit[1]
    return TypeAdapter(type_, *args, **kwargs)


def _share(module: ModuleType, type_name: str) -> None:
    """Build the adapter of ``module.<type_name>`` once and make ``module`` use it."""
    type_ = getattr(module, type_name, None)
    if type_ is None or getattr(module, "TypeAdapter", None) is None:
        log.warning("%s.%s not found: its type adapters are built per task", module.__name__, type_name)
        return
    _shared[id(type_)] = (type_, TypeAdapter(type_))
    module.TypeAdapter = shared_type_adapter  # type: ignore[attr-defined]


def install() -> None:
    """Build the shared adapters in this (warm) process; idempotent."""
    from airflow.sdk.execution_time import comms, task_runner

    if _shared:
        return
    _share(comms, "ToTask")
    _share(task_runner, "JsonValue")
