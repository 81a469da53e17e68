"""What ships: the runtime package alone, importing only what it declares (issue 10, part 4).

The wheel (and so the image, which installs it) holds ``airflow_knative`` and
nothing else: the generator, bench/ and tools/ are repo tools run from a checkout.
The runtime imports none of them, and every third-party module it imports comes
from a distribution named in ``[project] dependencies``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

RUNTIME = REPO_ROOT / "airflow_knative"
REPO_TOOLS = {"generator", "bench", "tools", "tests", "images", "workflows"}


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _runtime_imports() -> dict[str, list[str]]:
    """Top-level module -> runtime files importing it."""
    found: dict[str, list[str]] = {}
    for path in sorted(RUNTIME.rglob("*.py")):
        for name in _imported_modules(path):
            found.setdefault(name, []).append(str(path.relative_to(REPO_ROOT)))
    return found


def test_runtime_package_imports_no_repo_tool() -> None:
    offenders = {name: files for name, files in _runtime_imports().items() if name in REPO_TOOLS}
    assert offenders == {}, "move what both need into airflow_knative/ (as airflow_knative/inventory.py)"


def _declared_dependencies() -> set[str]:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(text).name.lower().replace("_", "-") for text in project["dependencies"]}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = _declared_dependencies()
    providers = packages_distributions()
    undeclared = {}
    for name, files in _runtime_imports().items():
        if name in sys.stdlib_module_names or name in {"airflow_knative", "__future__"}:
            continue
        distributions = {d.lower().replace("_", "-") for d in providers.get(name, [])}
        if name == "airflow":
            distributions = {"apache-airflow"}  # airflow.* is split over core, task SDK and providers
        if not distributions & declared:
            undeclared[name] = (sorted(distributions), files)
    assert undeclared == {}, "add these to [project] dependencies in pyproject.toml"


def test_no_runtime_dependency_is_used_only_by_repo_tools() -> None:
    imported = {
        d.lower().replace("_", "-")
        for name in _runtime_imports()
        for d in packages_distributions().get(name, [])
    } | {"apache-airflow"}
    unused = _declared_dependencies() - imported
    assert unused == set(), "move these to the dev extra: only the repo tools import them"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel `pip wheel` builds from a copy of this checkout (what the image installs).

    A copy (with the repo tools beside the package, as in a checkout) rather than the
    checkout itself: setuptools leaves a build/ folder behind whose stale files would
    end up in later wheels.
    """
    source = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for item in ("pyproject.toml", "README.md", "airflow_knative", "generator", "bench", "tools"):
        if (REPO_ROOT / item).is_dir():
            shutil.copytree(REPO_ROOT / item, source / item, ignore=ignore)
        else:
            shutil.copy2(REPO_ROOT / item, source / item)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (path,) = out.glob("airflow_knative-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_the_runtime_package_only(wheel: zipfile.ZipFile) -> None:
    files = wheel.namelist()
    tops = {name.split("/", 1)[0] for name in files}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"airflow_knative"}
    assert [name for name in files if "helm" in name or "bench" in name or "generator" in name] == []
    for module in (
        "airflow_knative/inventory.py",
        "airflow_knative/worker/server.py",
        "airflow_knative/cli.py",
    ):
        assert module in files


def test_wheel_requires_only_runtime_dependencies(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    requires = [
        Requirement(line.split(":", 1)[1].strip())
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    runtime = {req.name.lower() for req in requires if req.marker is None}
    assert runtime == _declared_dependencies()
    assert not runtime & {"jinja2", "ruamel.yaml", "matplotlib", "pytest"}


def test_tests_import_shared_helpers_one_way() -> None:
    """Shared test helpers are imported as ``tests.<folder>.<module>``; no relative imports, no path edits.

    Two ways to import one helper make two module objects (two copies of its state),
    and a bare ``import chart_helpers`` only works from some working directories.
    """
    tests = REPO_ROOT / "tests"
    helper_names = {p.stem for p in tests.rglob("*.py") if not p.stem.startswith(("test_", "__"))}
    helper_names.discard("conftest")
    offences = []
    for path in sorted(tests.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(REPO_ROOT)
        if path != Path(__file__) and ("sys.path.insert" in text or "sys.path.append" in text):
            offences.append(f"{where}: edits sys.path")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                offences.append(f"{where}:{node.lineno}: relative import")
            elif isinstance(node, ast.ImportFrom) and node.module in helper_names:
                offences.append(
                    f"{where}:{node.lineno}: `from {node.module}` (use tests.<folder>.{node.module})"
                )
            elif isinstance(node, ast.Import):
                offences += [
                    f"{where}:{node.lineno}: `import {a.name}` (use tests.<folder>.{a.name})"
                    for a in node.names
                    if a.name in helper_names
                ]
    assert not offences, "\n".join(offences)
