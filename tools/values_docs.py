"""Write docs/values.md, the chart's values reference, from chart/values.schema.json.

The schema is the one place a value is described: its type, default (equal to
chart/values.yaml, which tests/chart/test_values_schema.py checks) and what to
set. ``make values-docs`` runs this; ``tests/docs/test_values_docs.py`` fails
while docs/values.md differs from what it would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "chart" / "values.schema.json"
OUTPUT = ROOT / "docs" / "values.md"

HEADER = """# Chart values

<!-- Generated from chart/values.schema.json by `make values-docs`; edit the schema, not this file. -->

Every value of the airflow-knative chart (chart/values.yaml), with its type and
default. Unknown keys and wrong types fail `helm install` / `helm template`
(chart/values.schema.json); checks that need several values are in
chart/templates/check-values.yaml. See docs/chart.md for how the pieces fit.
"""


def schema_properties(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every value as (dotted key, its schema), parents before their children, in schema order."""
    for name, prop in schema.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        yield key, prop
        yield from schema_properties(prop, key)


def type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short type name: the JSON type or an enum's values, looked up in a shared definition if need be."""
    ref = prop.get("$ref") or next((part.get("$ref") for part in prop.get("allOf", [])), None)
    if "type" not in prop and "enum" not in prop and ref:
        name = ref.rsplit("/", 1)[-1]
        shared = defs.get(name, {})
        return type_of(shared, defs) if "type" in shared or "enum" in shared else name
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    kind = prop.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind) if kind else "any"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(prop: dict[str, Any]) -> str:
    value = prop.get("default")
    if value == "":
        return '`""`'
    return f"`{_cell(json.dumps(value, separators=(', ', ': ')))}`"


def render(schema: dict[str, Any]) -> str:
    """The Markdown document: one section per top-level value, one row per key under it."""
    parts = [HEADER]
    for name, top in schema["properties"].items():
        parts.append(f"\n## `{name}`\n\n{top.get('description', '')}\n\n")
        rows = [(name, top)] if "properties" not in top else list(schema_properties(top, name))
        table = ["| key | type | default | description |", "|---|---|---|---|"]
        for key, prop in rows:
            if "properties" in prop:  # a group: its keys follow, each with its own default
                table.append(f"| `{key}` | object | | {_cell(prop.get('description', ''))} |")
            else:
                kind = type_of(prop, schema.get("$defs", {}))
                table.append(
                    f"| `{key}` | {kind} | {_default(prop)} | {_cell(prop.get('description', ''))} |"
                )
        parts.append("\n".join(table) + "\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Write docs/values.md (``--check``: only report whether it is current)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schema", type=Path, default=SCHEMA)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/values.md is stale")
    args = parser.parse_args(argv)
    wanted = render(json.loads(args.schema.read_text()))
    if args.check:
        if not args.output.exists() or args.output.read_text() != wanted:
            print(f"{args.output} is stale: run `make values-docs`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
