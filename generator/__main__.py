"""``python -m generator``: the DAG files -> ``chart/files/services.yaml`` (what ``make generate`` runs).

Exit codes: 0 written or already current; 1 ``--check`` found the chart stale;
2 the DAGs cannot be turned into services (import error, bad ``executor_config``,
name collision). On 2 nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DAG_FOLDER = Path("workflows")
DEFAULT_OUTPUT = Path("chart/files/services.yaml")
DEFAULT_VALUES = (Path("chart/values.yaml"), Path("values"))

EXIT_STALE = 1
EXIT_INVALID = 2


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m generator", description=__doc__.splitlines()[0])
    parser.add_argument("--dag-folder", type=Path, default=DEFAULT_DAG_FOLDER, help="DAG files to parse.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Generated chart data file.")
    parser.add_argument(
        "--values",
        type=Path,
        action="append",
        help="Values file or folder to cross-check for stale workers.overrides (repeatable; "
        "default chart/values.yaml and values/).",
    )
    parser.add_argument(
        "--check", action="store_true", help="Write nothing; exit 1 when the output is out of date."
    )
    return parser


def _isolate_airflow() -> tempfile.TemporaryDirectory[str] | None:
    """Point Airflow at a throw-away home unless the caller chose one.

    Parsing must give what the scheduler in the cluster sees, not what a
    developer's ``~/airflow/airflow.cfg`` says, and must leave no files behind.
    """
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if "AIRFLOW_HOME" in os.environ:
        return None
    home = tempfile.TemporaryDirectory(prefix="airflow-knative-generate-")
    os.environ["AIRFLOW_HOME"] = home.name
    return home


def _values_files(paths: Sequence[Path]) -> list[Path]:
    """Expand folders to the ``*.yaml`` files in them; skip paths that do not exist."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.yaml")))
        elif path.is_file():
            files.append(path)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator; see the module docstring for exit codes."""
    args = build_parser().parse_args(argv)
    home = _isolate_airflow()
    try:
        return _run(args)
    finally:
        if home is not None:
            home.cleanup()


def _run(args: argparse.Namespace) -> int:
    from airflow_knative.inventory import InventoryError, collect_tasks
    from generator.chart_data import build_chart_data, timeout_warnings
    from generator.output import render, staleness, write_atomically
    from generator.values_check import max_timeouts, stale_overrides

    try:
        entries = collect_tasks(args.dag_folder)
        data = build_chart_data(entries)
    except (InventoryError, ValueError) as exc:
        print(f"generate: {exc}\ngenerate: nothing written; {args.output} is unchanged.", file=sys.stderr)
        return EXIT_INVALID
    text = render(data, dag_folder=f"{args.dag_folder.as_posix().rstrip('/')}/")
    values_files = _values_files(args.values or DEFAULT_VALUES)
    for problem in stale_overrides(values_files, set(data["services"])):
        print(f"generate: warning: {problem}", file=sys.stderr)
    for where, max_timeout in max_timeouts(values_files).items():
        for problem in timeout_warnings(entries, data, max_timeout, f"workers.maxTimeoutSeconds in {where}"):
            print(f"generate: warning: {problem}", file=sys.stderr)
    if args.check:
        diff = staleness(args.output, text)
        if diff is None:
            print(f"generate-check: {args.output} is up to date ({len(data['services'])} services).")
            return 0
        print(
            f"generate-check: {args.output} is stale: the DAGs in {args.dag_folder} changed. "
            f"Run `make generate` and commit the result.\n{diff}",
            file=sys.stderr,
        )
        return EXIT_STALE
    changed = write_atomically(args.output, text)
    state = "written" if changed else "unchanged"
    print(f"generate: {args.output} {state} ({len(data['services'])} services).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
