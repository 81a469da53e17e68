"""The image cannot be built here: check that what the chart runs exists in the package and Dockerfile."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_knative import cli
from airflow_knative.settings import SECTION, ExecutorSettings
from tests.chart.chart_helpers import CONTAINER_LISTEN_ADDRESS, MODES, ROOT, render

DOCKERFILE = ROOT / "images" / "Dockerfile"
CHART_VALUES = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def all_containers(mode: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in render(None, mode).docs:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") if "template" in spec else spec
        if doc["kind"] == "Job":
            pod = spec["template"]["spec"]
        for container in (pod or {}).get("initContainers", []) + (pod or {}).get("containers", []):
            found.append((f"{doc['kind']} {doc['metadata']['name']}", container))
    return found


def test_dockerfile_builds_on_the_official_airflow_3_3_image_and_runs_non_root() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert args["AIRFLOW_VERSION"].startswith("3.3.")
    (base,) = [a for kind, a in steps if kind == "FROM"]
    # The official image is the default; `make image` may pass a stand-in (images/base/).
    assert base == "${BASE_IMAGE}"
    assert args["BASE_IMAGE"].startswith("apache/airflow:${AIRFLOW_VERSION}")
    users = [a for kind, a in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_copies_paths_that_exist_and_bakes_the_dags_where_the_chart_looks() -> None:
    copies = [a.split() for kind, a in instructions() if kind == "COPY"]
    destinations = {}
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        for source in sources:
            if "*" in source:
                continue  # optional files (README.md*)
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
            destinations[source.rstrip("/")] = parts[-1].rstrip("/")
    assert destinations["workflows"] == CHART_VALUES["airflow"]["dagsFolder"]
    assert {"pyproject.toml", "airflow_knative"} <= set(destinations)


@pytest.mark.parametrize("mode", MODES)
def test_airflow_knative_commands_exist(mode: str) -> None:
    parser = cli.build_parser()
    commands = [
        (where, c["command"])
        for where, c in all_containers(mode)
        if c.get("command", [""])[0] == "airflow-knative"
    ]
    assert {cmd[1] for _, cmd in commands} == {"worker", "gateway"}
    for where, command in commands:
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown option
        assert args.host == CONTAINER_LISTEN_ADDRESS, where


@pytest.mark.parametrize("mode", MODES)
def test_container_env_names_are_ones_the_package_reads(mode: str) -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "airflow_knative").rglob("*.py"))
    options = {f.name.upper() for f in dataclasses.fields(ExecutorSettings)}
    for where, container in all_containers(mode):
        for env in container.get("env", []):
            name = env["name"]
            if name.startswith("AIRFLOW_KNATIVE_"):
                assert f'"{name}"' in sources, f"{where}: {name} is read nowhere in airflow_knative/"
            if name.startswith(f"AIRFLOW__{SECTION.upper()}__"):
                assert name.rsplit("__", 1)[1] in options, f"{where}: {name} is no [{SECTION}] option"


def test_airflow_cli_commands_exist(tmp_path: Path) -> None:
    """Every `airflow ...` command of a container parses with Airflow's own CLI (FAB's `users` aside)."""
    commands = {
        tuple(c["command"]) for _, c in all_containers("knative") if c.get("command", [""])[0] == "airflow"
    }
    scripts = [c["command"][2] for _, c in all_containers("knative") if c.get("command", [""])[0] == "bash"]
    for script in scripts:
        for match in re.finditer(r"\bairflow ([a-z][-a-z ]*[a-z])", script):
            words = match.group(1).split()
            commands.add(("airflow", *words[:2]))
    to_check = sorted(c[1:] for c in commands if c[1] != "users")  # `users` comes from the FAB provider
    assert ("db", "migrate") in to_check and ("scheduler",) in to_check
    code = (
        "import json, sys\n"
        "from airflow.cli import cli_parser\n"
        "parser = cli_parser.get_parser()\n"
        "bad = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        bad.append(argv)\n"
        "print(json.dumps(bad))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(to_check)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
