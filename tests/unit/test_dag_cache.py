"""The pool process's DAG cache: one parse per DAG file version, handed to the forked task process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import airflow.dag_processing.dagbag as dagbag_module
import pytest

from airflow_knative.worker import dag_cache

DAG_SOURCE = """
from airflow.sdk import DAG, task

with DAG(dag_id="cached_{n}", schedule=None):
    @task
    def only():
        return {n}
    only()
"""


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> type:
    """Install the cache for this test only (the original class comes back afterwards)."""
    monkeypatch.setattr(dagbag_module, "BundleDagBag", dagbag_module.BundleDagBag)
    monkeypatch.setattr(dag_cache, "_bags", type(dag_cache._bags)())
    dag_cache.install()
    bag_class: type = dagbag_module.BundleDagBag
    return bag_class


def _bag(bag_class: type, path: Path) -> object:
    # the arguments Airflow's task_runner.parse passes
    return bag_class(
        dag_folder=os.fspath(path),
        safe_mode=False,
        load_op_links=False,
        bundle_path=path.parent,
        bundle_name="b",
    )


def test_the_same_unchanged_file_is_parsed_once(cache: type, tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(DAG_SOURCE.format(n=1))

    first = _bag(cache, path)
    second = _bag(cache, path)

    assert first is second
    assert list(first.dags) == ["cached_1"]  # type: ignore[attr-defined]


def test_a_changed_file_is_parsed_again(cache: type, tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(DAG_SOURCE.format(n=1))
    first = _bag(cache, path)

    path.write_text(DAG_SOURCE.format(n=22))  # a new DAG version
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a coarse clock must not hide it
    second = _bag(cache, path)

    assert second is not first
    assert list(second.dags) == ["cached_22"]  # type: ignore[attr-defined]


def test_a_file_that_fails_to_import_is_not_cached(cache: type, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("from airflow.sdk import DAG\nraise RuntimeError('boom')\n")

    first = _bag(cache, path)
    second = _bag(cache, path)

    assert first.import_errors  # type: ignore[attr-defined]
    assert second is not first  # the task process parses again and reports the error itself


PRELOAD_THEN_PARSE = """
import os, sys
from pathlib import Path
from airflow_knative.worker import dag_cache
dag_cache.install()
dag_cache.preload("dags-folder", None, "dag.py")
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag
bundle = DagBundlesManager().get_bundle(name="dags-folder", version=None)
# what Airflow's task_runner.parse does in the forked task process
bag = BundleDagBag(dag_folder=os.fspath(Path(bundle.path, "dag.py")), safe_mode=False, load_op_links=False,
                   bundle_path=bundle.path, bundle_name="dags-folder")
cached = [entry[1] for entry in dag_cache._bags.values()]
print("HIT" if cached and bag is cached[0] else "MISS", sorted(bag.dags))
"""


def test_preload_parses_in_this_process_what_the_task_runner_asks_for_later(tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text(DAG_SOURCE.format(n=3))
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    done = subprocess.run(
        [sys.executable, "-c", PRELOAD_THEN_PARSE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "HIT ['cached_3']"


WARM_CHECK = """
import os, sys
from pathlib import Path
import airflow.dag_processing.dagbag as dagbag_module
from airflow_knative.worker import dag_cache

dag_cache.install()
path = Path(sys.argv[1])
bag = dagbag_module.BundleDagBag(
    dag_folder=os.fspath(path), safe_mode=False, load_op_links=False,
    bundle_path=path.parent, bundle_name="b",
)
before = set(sys.modules)
bag.dags["cached_4"].get_template_env()
print(sorted(set(sys.modules) - before))
"""


def test_a_parsed_dags_template_environment_costs_its_task_processes_no_import(tmp_path: Path) -> None:
    # A fresh interpreter: in this one, earlier tests may have imported Jinja's extensions already.
    path = tmp_path / "dag.py"
    path.write_text(DAG_SOURCE.format(n=4))

    done = subprocess.run(
        [sys.executable, "-c", WARM_CHECK, os.fspath(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", "building the template env imported modules"
