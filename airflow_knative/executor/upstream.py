"""Which tasks feed a task: read once per DAG version from the serialized DAG.

The scheduler has already stored every DAG version; the executor reads it from
there (off the scheduler thread) instead of parsing DAG files.
"""

from __future__ import annotations

import logging
import uuid

log = logging.getLogger(__name__)

UpstreamMap = dict[str, frozenset[str]]


def load_upstream_map(dag_version_id: str) -> UpstreamMap:
    """Return ``task_id -> upstream task ids`` for one DAG version; empty if it cannot be read."""
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            dag = DBDagBag().get_dag(uuid.UUID(dag_version_id), session=session)
    except Exception:  # inline values are an optimisation: without them tasks read via the API
        log.warning("cannot read DAG version %s; sending no inline values", dag_version_id, exc_info=True)
        return {}
    if dag is None:
        return {}
    return {task_id: frozenset(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}


class UpstreamIndex:
    """Cache of :func:`load_upstream_map` results, one per DAG version (versions never change)."""

    def __init__(self, max_versions: int = 256) -> None:
        self._maps: dict[str, UpstreamMap] = {}
        self._max_versions = max_versions

    def known(self, dag_version_id: str) -> UpstreamMap | None:
        """Return the cached map, or None when it has to be loaded."""
        return self._maps.get(dag_version_id)

    def remember(self, dag_version_id: str, upstream: UpstreamMap) -> None:
        """Cache a loaded map, forgetting the oldest when full."""
        if len(self._maps) >= self._max_versions:
            self._maps.pop(next(iter(self._maps)))
        self._maps[dag_version_id] = upstream
