"""Writing the generated chart data: deterministic text, atomic replace, staleness check.

The file is machine-written and never hand-edited, so it is dumped with PyYAML's
(fast, C-backed) emitter; ruamel.yaml is kept for the files people edit
(see :mod:`generator.values_check`).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

GENERATE_COMMAND = "make generate"


def header(dag_folder: str) -> str:
    """Return the comment block that opens the generated file.

    It names the command, so whoever opens the file knows how to refresh it and
    where their own settings belong instead.
    """
    return (
        "# GENERATED FILE - DO NOT EDIT.\n"
        f"# Written by `{GENERATE_COMMAND}` (python -m generator) from the DAG files in {dag_folder};\n"
        "# `make generate-check` fails while it is out of date.\n"
        "# Per-service settings belong in values, which this command never touches:\n"
        "#   workers.overrides.<service>.{minScale,maxScale,target,containerConcurrency,\n"
        "#                                timeoutSeconds,resources}\n"
    )


def _dumper() -> type[yaml.SafeDumper]:
    """Return the fastest safe dumper available (the C one when PyYAML was built with libyaml)."""
    dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return dumper


def render(data: dict[str, Any], *, dag_folder: str) -> str:
    """Return the file text for ``data``: same input, byte-identical output (sorted, no timestamps)."""
    body = yaml.dump(
        data, Dumper=_dumper(), sort_keys=True, default_flow_style=False, allow_unicode=True, width=1000
    )
    return header(dag_folder) + body


def write_atomically(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` in one step; return whether the content changed.

    Writing to a temporary file in the same folder and renaming it means a reader
    (or an interrupted run) sees either the old file or the new one, never half.
    An unchanged file is left alone so its modification time does not move.
    """
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def staleness(path: Path, text: str, *, max_lines: int = 40) -> str | None:
    """Return ``None`` when ``path`` holds ``text``, else a short diff explaining what changed."""
    current = path.read_text() if path.is_file() else ""
    if current == text:
        return None
    diff = list(
        difflib.unified_diff(
            current.splitlines(), text.splitlines(), f"{path} (committed)", f"{path} (from DAGs)", lineterm=""
        )
    )
    shown = "\n".join(diff[:max_lines])
    more = f"\n... {len(diff) - max_lines} more diff lines" if len(diff) > max_lines else ""
    return shown + more
