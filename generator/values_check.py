"""Cross-check hand-written values files against the generated services.

The generator never writes values files (hand-made settings are never
overwritten), but a DAG or task rename leaves ``workers.overrides.<old-name>``
behind, which the chart then refuses to render. Reading the files with
ruamel.yaml's round-trip loader keeps line numbers, so the warning can point at
the exact line to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap


def _overrides(document: object) -> CommentedMap | None:
    """Return ``workers.overrides`` of a values document when it is a mapping."""
    if not isinstance(document, CommentedMap):
        return None
    workers = document.get("workers")
    if not isinstance(workers, CommentedMap):
        return None
    overrides = workers.get("overrides")
    return overrides if isinstance(overrides, CommentedMap) else None


def stale_overrides(values_files: Iterable[Path], services: set[str]) -> list[str]:
    """Return one ``file:line: message`` per override that names no generated service."""
    loader = YAML(typ="rt")
    problems: list[str] = []
    for path in sorted(values_files):
        overrides = _overrides(loader.load(path.read_text()))
        if overrides is None:
            continue
        for name in overrides:
            if name not in services:
                line = overrides.lc.key(name)[0] + 1
                problems.append(
                    f"{path}:{line}: workers.overrides.{name} names no generated service "
                    "(renamed or removed task?): rename or delete it, or the chart will refuse to render"
                )
    return problems


def max_timeouts(values_files: Iterable[Path]) -> dict[str, int]:
    """``values file -> workers.maxTimeoutSeconds`` for the files that set it (the chart default included)."""
    loader = YAML(typ="rt")
    found: dict[str, int] = {}
    for path in sorted(values_files):
        document = loader.load(path.read_text())
        workers = document.get("workers") if isinstance(document, CommentedMap) else None
        value = workers.get("maxTimeoutSeconds") if isinstance(workers, CommentedMap) else None
        if isinstance(value, int):
            found[str(path)] = value
    return found
