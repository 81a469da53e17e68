"""Rewrite the generated option tables in the docs from their one declaration each.

- README: ``[knative_executor]`` (airflow_knative/settings.py), ``airflow-knative worker``
  (worker/cli.py ``WorkerOptions``) and ``airflow-knative dev`` (local/config.py ``StackConfig``);
- docs/gateway.md: ``airflow-knative gateway`` (gateway/settings.py ``GatewaySettings``).

``make docs-tables`` (alias ``make readme-config``) runs this; ``tests/docs/test_readme.py``
fails while a table differs from what it would write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airflow_knative.gateway.settings import GatewaySettings
from airflow_knative.local.config import StackConfig
from airflow_knative.options import markdown_table
from airflow_knative.settings import OptionSpec, option_specs
from airflow_knative.worker.cli import WorkerOptions

ROOT = Path(__file__).resolve().parent.parent


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _executor_row(option: OptionSpec) -> str:
    if option.required:
        default = "(required)"
    else:
        default = f"`{option.default_text}`" if option.default_text else "(empty)"
    example = f"`{option.example}`" if option.example is not None else ""
    return (
        f"| `{option.name}` | {option.airflow_type} | {default} | {_cell(example)} "
        f"| {_cell(option.description)} |"
    )


def executor_table() -> str:
    """The ``[knative_executor]`` options as a Markdown table."""
    rows = [_executor_row(option) for option in option_specs()]
    return "\n".join(["| option | type | default | example | description |", "|---|---|---|---|---|", *rows])


@dataclass(frozen=True)
class GeneratedTable:
    """One table in one Markdown file, between two marker comments."""

    path: Path
    what: str
    source: str
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        """The comment before the table."""
        return f"<!-- {self.what} options: generated from {self.source} by `make docs-tables` -->"

    @property
    def end(self) -> str:
        """The comment after the table."""
        return f"<!-- end of {self.what} options -->"

    def replace(self, text: str) -> str:
        """``text`` with the part between the markers replaced by the rendered table."""
        start, end = text.find(self.begin), text.find(self.end)
        if start < 0 or end < start:
            raise ValueError(
                f"{self.path} lacks the markers {self.begin!r} ... {self.end!r}: "
                "put them where the table goes"
            )
        return text[:start] + "\n".join([self.begin, self.render(), self.end]) + text[end + len(self.end) :]


def tables(root: Path = ROOT) -> list[GeneratedTable]:
    """Every generated table of the docs under ``root``."""
    readme, gateway_doc = root / "README.md", root / "docs" / "gateway.md"
    return [
        GeneratedTable(readme, "[knative_executor]", "airflow_knative/settings.py", executor_table),
        GeneratedTable(
            readme,
            "airflow-knative worker",
            "airflow_knative/worker/cli.py",
            lambda: markdown_table(WorkerOptions),
        ),
        GeneratedTable(
            readme,
            "airflow-knative dev",
            "airflow_knative/local/config.py",
            lambda: markdown_table(StackConfig),
        ),
        GeneratedTable(
            gateway_doc,
            "airflow-knative gateway",
            "airflow_knative/gateway/settings.py",
            lambda: markdown_table(GatewaySettings),
        ),
    ]


def stale_files(root: Path = ROOT) -> dict[Path, str]:
    """Files whose generated tables differ from their declarations, with the text they should have."""
    wanted: dict[Path, str] = {}
    for table in tables(root):
        wanted[table.path] = table.replace(wanted.get(table.path) or table.path.read_text())
    return {path: text for path, text in wanted.items() if text != path.read_text()}


def main(argv: list[str] | None = None) -> int:
    """Rewrite the tables in place (``--check``: only report whether they are current)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated table is stale")
    args = parser.parse_args(argv)
    stale = stale_files(args.root)
    for path, text in stale.items():
        if args.check:
            print(f"{path}: generated option table is stale; run `make docs-tables`", file=sys.stderr)
        else:
            path.write_text(text)
            print(f"{path}: option tables rewritten")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
