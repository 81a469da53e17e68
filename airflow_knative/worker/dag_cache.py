"""Parse each DAG file once per version in the warm pool process, not once per task.

Airflow's task runner parses the task's DAG file in every task process
(``task_runner.parse`` builds a ``BundleDagBag`` of that one file). The worker's
pool processes fork the task processes, so a bag parsed in the pool process is
already in the task process's memory: :func:`install` makes ``BundleDagBag(...)``
return that bag while the file is unchanged, and :func:`preload` parses the file
in the pool process right before the supervisor forks the task.

Isolation is unchanged: the task still runs in its own forked process; whatever it
does to the DAG objects stays in that process. A file that changed on disk
(a new DAG version) is parsed again. A file that fails to parse is not cached:
the task process then parses it itself and reports the error as Airflow does.

A freshly parsed file's DAGs also build their Jinja environment once
(:func:`_warm_template_envs`): the first environment of a process imports the Jinja
extensions Airflow loads, which forked task processes then inherit instead of each
importing them again (2-4 ms per task).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: DAG files kept parsed per pool process (least recently used out).
MAX_FILES = 64

_Key = tuple[str, str, str | None, bool, bool]
_bags: OrderedDict[_Key, tuple[tuple[int, int], Any]] = OrderedDict()


def _key(kwargs: dict[str, Any]) -> _Key | None:
    folder = kwargs.get("dag_folder")
    if folder is None or kwargs.get("bundle_path") is None:
        return None
    return (
        os.fspath(folder),
        os.fspath(kwargs["bundle_path"]),
        kwargs.get("bundle_name"),
        bool(kwargs.get("safe_mode", True)),
        bool(kwargs.get("load_op_links", True)),
    )


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _warm_template_envs(bag: Any) -> None:
    """Build each DAG's Jinja environment once, so what it imports is imported before task processes fork."""
    for dag in bag.dags.values():
        try:
            dag.get_template_env()
        except Exception:  # the task process builds it again and reports the error as Airflow does
            log.debug("could not build the template environment of %s", dag.dag_id, exc_info=True)


def install() -> None:
    """Replace ``BundleDagBag`` (looked up by the task runner at call time) with a caching subclass."""
    import airflow.dag_processing.dagbag as dagbag_module

    original = dagbag_module.BundleDagBag
    if getattr(original, "_knative_cache", False):
        return

    class CachedBundleDagBag(original):  # type: ignore[misc,valid-type]
        """A ``BundleDagBag`` that is built once per (file, modification time) in this process."""

        _knative_cache = True

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            key = _key(kwargs)
            stamp = _stamp(key[0]) if key and not args else None
            if key is not None and stamp is not None:
                hit = _bags.get(key)
                if hit is not None and hit[0] == stamp:
                    _bags.move_to_end(key)
                    return hit[1]
            return super().__new__(cls)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if getattr(self, "_knative_cached", False):
                return  # a cached bag handed out again: already built
            super().__init__(*args, **kwargs)
            key = _key(kwargs)
            stamp = _stamp(key[0]) if key and not args else None
            if key is not None and stamp is not None and not self.import_errors:
                self._knative_cached = True
                _bags[key] = (stamp, self)
                while len(_bags) > MAX_FILES:
                    _bags.popitem(last=False)
                _warm_template_envs(self)

    dagbag_module.BundleDagBag = CachedBundleDagBag  # type: ignore[misc]


def preload(bundle_name: str, bundle_version: str | None, dag_rel_path: str | os.PathLike[str]) -> None:
    """Parse the task's DAG file in this (pool) process with the task runner's arguments."""
    try:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import BundleDagBag

        bundle = DagBundlesManager().get_bundle(name=bundle_name, version=bundle_version)
        bundle.initialize()
        BundleDagBag(
            dag_folder=os.fspath(Path(bundle.path, dag_rel_path)),
            safe_mode=False,
            load_op_links=False,
            bundle_path=bundle.path,
            bundle_name=bundle_name,
        )
    except Exception:  # the task process parses (and reports) on its own
        log.warning("could not pre-parse %s; the task process will parse it", dag_rel_path, exc_info=True)
