"""`make image` sends only what the image needs, whatever builder runs it (issue 11, item 9).

images/build.py stages the files images/Dockerfile.dockerignore lets through into a
directory of their own and builds from there, so BuildKit (which reads
<Dockerfile>.dockerignore), Docker's legacy builder and podman (which read only a
.dockerignore at the context root) all receive the same few files. The root
.dockerignore links to the same rules for builds started by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from images import build

ROOT = Path(__file__).resolve().parents[2]

IGNORE = ROOT / "images" / "Dockerfile.dockerignore"


def test_context_is_only_the_package_the_dags_and_the_project_file() -> None:
    files = build.context_files(ROOT, IGNORE)
    tops = {f.split("/", 1)[0] for f in files}
    assert tops == {"pyproject.toml", "README.md", "airflow_knative", "workflows"}
    assert "workflows/compute_avg_distributed.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_what_the_dockerfile_copies_is_in_the_context() -> None:
    files = build.context_files(ROOT, IGNORE)
    copies = [
        line.split()[1:-1] for line in (ROOT / "images" / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY")
    ]  # fmt: skip
    for sources in copies:
        for source in (s for s in sources if not s.startswith("--")):
            if "*" in source:
                continue
            assert any(f == source.rstrip("/") or f.startswith(source) for f in files), source


def test_ignore_rules_follow_docker(tmp_path: Path) -> None:
    rules = build.ignore_rules(IGNORE)
    assert build.is_ignored(rules, ".venv/bin/python")
    assert build.is_ignored(rules, "tests/conftest.py")
    assert build.is_ignored(rules, "airflow_knative/__pycache__/cli.cpython-311.pyc")
    assert not build.is_ignored(rules, "airflow_knative/worker/server.py")
    assert build.is_ignored(build.ignore_rules(_write(tmp_path, "*\n!a\na/b\n")), "a/b/c")
    assert not build.is_ignored(build.ignore_rules(_write(tmp_path, "*\n!a\na/b\n!a/b/c\n")), "a/b/c")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ignore"
    path.write_text(text)
    return path


def test_staged_context_hash_changes_with_a_dag_and_only_then(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("pyproject.toml", "README.md", "airflow_knative", "workflows", "images"):
        source = ROOT / item
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, repo / item)
    (repo / "tests").mkdir()
    (repo / "tests" / "big.bin").write_bytes(b"x" * 1000)
    first = build.stage_context(
        repo, repo / "images/Dockerfile.dockerignore", repo / "images/Dockerfile", tmp_path / "a"
    )
    (repo / "tests" / "big.bin").write_bytes(b"y")  # not in the context: same hash
    second = build.stage_context(
        repo, repo / "images/Dockerfile.dockerignore", repo / "images/Dockerfile", tmp_path / "b"
    )
    (repo / "workflows" / "new_dag.py").write_text("# a new DAG\n")
    third = build.stage_context(
        repo, repo / "images/Dockerfile.dockerignore", repo / "images/Dockerfile", tmp_path / "c"
    )
    assert first == second != third
    assert not (tmp_path / "c" / "tests").exists()
    assert (tmp_path / "c" / "workflows" / "new_dag.py").is_file()


def test_root_dockerignore_has_the_same_rules_for_builders_that_read_only_the_root() -> None:
    root_ignore = ROOT / ".dockerignore"
    assert root_ignore.is_symlink() and root_ignore.resolve() == IGNORE.resolve()


@pytest.mark.containers
def test_a_real_builder_reading_only_the_root_ignore_file_receives_just_the_context(tmp_path: Path) -> None:
    """podman, like Docker's legacy builder, reads <context>/.dockerignore only."""
    try:
        engine = build.find_engine()
    except build.BuildError as exc:
        pytest.skip(f"no container engine: {exc}")
    probe = tmp_path / "Probe.Dockerfile"
    probe.write_text("FROM scratch\nCOPY . /context/\n")
    tag = "localhost/airflow-knative-context-probe:test"
    result = subprocess.run(
        engine.command("build", "--file", str(probe), "--tag", tag, *engine.limits, str(ROOT)),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    try:
        mounted = engine.run("image", "mount", tag, quiet=True).stdout.strip()
        received = sorted(
            p.relative_to(Path(mounted) / "context").as_posix()
            for p in (Path(mounted) / "context").rglob("*") if p.is_file()
        )  # fmt: skip
    finally:
        engine.run("image", "unmount", tag, check=False, quiet=True)
        engine.run("rmi", "-f", tag, check=False, quiet=True)
    assert received == build.context_files(ROOT, IGNORE)
