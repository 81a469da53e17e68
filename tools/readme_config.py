"""Rewrite the README's ``[knative_executor]`` table from the one declaration in ``airflow_knative.settings``.

``make readme-config`` runs this; ``tests/docs/test_readme.py`` fails while the
README differs from what it would write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airflow_knative.settings import OptionSpec, option_specs

BEGIN = (
    "<!-- [knative_executor] options: generated from airflow_knative/settings.py by `make readme-config` -->"
)
END = "<!-- end of [knative_executor] options -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(option: OptionSpec) -> str:
    if option.required:
        default = "(required)"
    else:
        default = f"`{option.default_text}`" if option.default_text else "(empty)"
    example = f"`{option.example}`" if option.example is not None else ""
    return (
        f"| `{option.name}` | {option.airflow_type} | {default} | {_cell(example)} "
        f"| {_cell(option.description)} |"
    )


def render_table() -> str:
    """The Markdown table, between its markers."""
    rows = [_row(option) for option in option_specs()]
    return "\n".join(
        [BEGIN, "| option | type | default | example | description |", "|---|---|---|---|---|", *rows, END]
    )


def replace_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by :func:`render_table`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README lacks the markers {BEGIN!r} ... {END!r}: put them where the table goes")
    return readme[:start] + render_table() + readme[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the table in place (``--check``: only report whether it is current)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's table is stale")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    wanted = replace_table(current)
    if args.check:
        if wanted != current:
            print(
                f"{args.readme}: [knative_executor] table is stale; run `make readme-config`", file=sys.stderr
            )
            return 1
        return 0
    if wanted != current:
        args.readme.write_text(wanted)
        print(f"{args.readme}: [knative_executor] table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
