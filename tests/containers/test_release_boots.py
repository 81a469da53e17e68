"""The release boots as real containers: `helm template` in deployment mode, run on podman.

The test is a user's checkout: this repository with workflows/ holding the DAGs it
runs (compute_avg_distributed and dags/boot_retry.py; the 60 benchmark services
would need about 12 GB for their warm workers), `make generate`, the image built by
images/build.py (the same code path as `make image`, layers reused), and the chart
rendered with boot-values.yaml. Every workload then runs as its own container with
the manifests' command, args, env, mounts, user and security context
(kube_podman.py; the translations are listed in docs/containers.md), on an
`--internal` network that is removed at the end with everything else.

Skipped, with the reason, where no container engine can run (not root, no podman).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from images import build as image_build  # images/build.py: the engine rules of `make image`
from tests.chart.chart_helpers import find_helm
from tests.containers.kube_podman import Release, Workload
from tests.containers.podman_cluster import Podman, PodmanCluster

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.containers, pytest.mark.timeout(7200)]

NAMESPACE = "airflow"
RELEASE = "airflow"
BOOT_DAGS = (ROOT / "workflows" / "compute_avg_distributed.py", HERE / "dags" / "boot_retry.py")
ADDED_DAG = HERE / "dags" / "boot_added.py"
#: Bounds of the waits below (the machine is shared: generous, but finite).
BOOT_TIMEOUT = 2700
CALL_TIMEOUT = 600
#: An upgrade starts no database and builds no base image: the rollout alone.
UPGRADE_TIMEOUT = 1200


def podman_or_skip() -> Podman:
    """The podman these machines can run containers with, or skip saying why not."""
    if os.geteuid() != 0:
        pytest.skip("container boot test: needs root (podman runs rootful with runc on these machines)")
    if not shutil.which("podman"):
        pytest.skip("container boot test: podman is not installed (as root: `make podman`)")
    try:
        engine = image_build.find_engine()
    except image_build.BuildError as exc:
        pytest.skip(f"container boot test: {exc}")
    if engine.name != "podman":
        pytest.skip("container boot test: runs on podman (internal networks, network aliases)")
    return Podman(engine.argv, engine.limits)


def checkout(target: Path, dags: list[Path]) -> Path:
    """A user's checkout with workflows/ holding dags, and `make generate` run in it."""
    for item in ("pyproject.toml", "README.md", "airflow_knative", "generator", "images", "chart"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / item)
    (target / "workflows").mkdir()
    for dag in dags:
        shutil.copy2(dag, target / "workflows" / dag.name)
    subprocess.run(
        [
            sys.executable, "-m", "generator",
            "--dag-folder", str(target / "workflows"),
            "--output", str(target / "chart" / "files" / "services.yaml"),
            "--values", str(target / "chart" / "values.yaml"),
        ],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def build_image(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "images" / "build.py"), "--root", str(root), "--tag", ""],
        capture_output=True, text=True, check=False, timeout=3000,
    )  # fmt: skip
    assert result.returncode == 0, f"image build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout.strip().splitlines()[-1]


def postgres_image() -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "images" / "build.py"), "--postgres"],
        capture_output=True, text=True, check=False, timeout=3000,
    )  # fmt: skip
    assert result.returncode == 0, f"postgres stand-in build failed:\n{result.stderr[-5000:]}"
    return result.stdout.strip().splitlines()[-1]


def render(chart_root: Path, image: str, postgres: str) -> list[dict[str, Any]]:
    """`helm template` of the checkout's chart with boot-values.yaml and the built images."""
    repository, tag = image.rsplit(":", 1)
    pg_repository, pg_tag = postgres.rsplit(":", 1)
    result = subprocess.run(
        [
            find_helm(), "template", RELEASE, str(chart_root / "chart"), "--namespace", NAMESPACE,
            "-f", str(HERE / "boot-values.yaml"),
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"postgresql.image.repository={pg_repository}",
            "--set", f"postgresql.image.tag={pg_tag}",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def worker_for(release: Release, dag_id: str, task_id: str) -> Workload:
    """The worker Deployment serving dag_id.task_id (its tasks annotation names it)."""
    for workload in release.workloads.values():
        tasks = (workload.manifest["metadata"].get("annotations") or {}).get("airflow-knative/tasks", "")
        if workload.kind == "Deployment" and f"{dag_id}.{task_id}" in tasks.split(", "):
            return workload
    raise AssertionError(f"no worker Deployment serves {dag_id}.{task_id}")


@pytest.fixture(scope="module")
def podman() -> Podman:
    return podman_or_skip()


@pytest.fixture(scope="module")
def images(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    first = checkout(tmp_path_factory.mktemp("checkout-1"), list(BOOT_DAGS))
    return {"checkout": first, "app": build_image(first), "postgres": postgres_image()}


@pytest.fixture(scope="module")
def cluster(
    podman: Podman, images: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodmanCluster]:
    release = Release(render(images["checkout"], images["app"], images["postgres"]), NAMESPACE)
    # Not under pytest's basetemp: other pytest sessions on the machine prune old basetemps,
    # which would delete the database's volume under the running containers.
    state = Path(tempfile.mkdtemp(prefix="airflow-knative-boot-", dir="/var/tmp"))
    booted = PodmanCluster(podman, state, helper_image=images["app"], namespace=NAMESPACE)
    try:
        booted.create()
        booted.apply(release)
        booted.wait_ready(BOOT_TIMEOUT)
        yield booted
    finally:
        if os.environ.get("BOOT_TEST_KEEP"):  # debugging: leave everything for `podman logs`
            print(f"BOOT_TEST_KEEP: network {booted.network} and its containers are left running")
        else:
            booted.delete()
            shutil.rmtree(state, ignore_errors=True)


def admin_password(release: Release) -> str:
    return release.secrets[f"{RELEASE}-airflow-knative-admin"]["password"].decode()


def gateway_url(release: Release, dag_id: str) -> str:
    service = release.services[f"{RELEASE}-airflow-knative-gateway"]
    port = service.ports[0][0]
    return f"http://{service.dns_names[-1]}:{port}/runWorkflow/{dag_id}"


def run_workflow(cluster: PodmanCluster, dag_id: str, data: Any) -> dict[str, Any]:
    """POST /runWorkflow/<dag_id> from inside the network; the gateway's answer."""
    assert cluster.release is not None
    url = gateway_url(cluster.release, dag_id)
    result = cluster.call(
        "gateway_call.py", url, "admin", admin_password(cluster.release), json.dumps({"input": data}),
        timeout=CALL_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, f"gateway unreachable: {result.stderr[-2000:]}\n{cluster.describe()}"
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if answer["status"] != 200:
        answer["cluster"] = cluster.describe()
    return answer


def test_every_rendered_workload_runs_as_its_manifest_says(cluster: PodmanCluster) -> None:
    assert cluster.release is not None
    kinds = {w.kind for w in cluster.release.workloads.values()}
    assert {"Deployment", "StatefulSet", "Job"} <= kinds
    for key, workload in cluster.release.workloads.items():
        if workload.kind in ("Deployment", "StatefulSet"):
            pods = cluster.pods_of(workload.kind, workload.name)
            assert len(pods) == workload.replicas, key
            for pod in pods:
                for run in pod.containers:
                    user = cluster.podman("exec", cluster.container_name(run.name), "id", "-u").stdout.strip()
                    expected = (workload.pod_spec.get("securityContext") or {}).get("runAsUser")
                    assert user == str(expected), f"{key}: runs as uid {user}, manifest says {expected}"


def test_compute_avg_distributed_gives_2_5_through_the_gateway(cluster: PodmanCluster) -> None:
    answer = run_workflow(cluster, "compute_avg_distributed", [1, 2, 3, 4])
    # A str message: pytest shortens the repr of other objects, which hid the container logs.
    assert answer["status"] == 200, f"{answer['body']}\n{answer.get('cluster', '')}"
    assert json.loads(answer["body"])["output"] == 2.5


def test_helm_test_pod_passes(cluster: PodmanCluster) -> None:
    results = cluster.run_helm_tests()
    assert results, "the chart renders no helm test pod"
    for name, code, output in results:
        assert code == 0, f"helm test {name} exited {code}:\n{output}"


def test_worker_killed_mid_task_is_replaced_and_the_task_retried(cluster: PodmanCluster) -> None:
    assert cluster.release is not None
    worker = worker_for(cluster.release, "boot_retry", "slow_double")
    (pod,) = cluster.pods_of("Deployment", worker.name)
    url = gateway_url(cluster.release, "boot_retry")
    body = json.dumps({"input": {"value": 21, "seconds": 90}})
    call = subprocess.Popen(
        [*cluster.podman.argv, "exec", cluster.container_name("node"), "python", "/boot-test/gateway_call.py",
         url, "admin", admin_password(cluster.release), body],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "task_accepted" not in cluster.logs(pod.containers[0], tail=200):
            assert time.monotonic() < deadline, f"the task never reached its worker\n{cluster.describe()}"
            assert call.poll() is None, f"the call ended before the kill: {call.communicate()}"
            time.sleep(2)
        time.sleep(3)  # the task process is sleeping now
        cluster.kill(pod.containers[0])
        deadline = time.monotonic() + 300
        while not [p for p in cluster.pods_of("Deployment", worker.name) if p.name != pod.name]:
            assert time.monotonic() < deadline, "the killed worker's pod was not replaced"
            time.sleep(2)
        out, err = call.communicate(timeout=CALL_TIMEOUT)
    finally:
        if call.poll() is None:
            call.kill()
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["status"] == 200, f"{answer}\n{err[-2000:]}\n{cluster.describe()}"
    assert json.loads(answer["body"])["output"] == 42
    (replacement,) = cluster.pods_of("Deployment", worker.name)
    assert "task_accepted" in cluster.logs(replacement.containers[0], tail=400), "the retry ran elsewhere"


def test_upgrade_with_an_added_dag_adds_its_worker_and_runs_it(
    cluster: PodmanCluster, images: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert cluster.release is not None
    second = checkout(tmp_path_factory.mktemp("checkout-2"), [*BOOT_DAGS, ADDED_DAG])
    image = build_image(second)
    assert image != images["app"]
    upgraded = Release(render(second, image, images["postgres"]), NAMESPACE, keep_secrets_of=cluster.release)
    added = worker_for(upgraded, "boot_added", "total")
    with pytest.raises(AssertionError):
        worker_for(cluster.release, "boot_added", "total")
    cluster.apply(upgraded)
    cluster.wait_ready(UPGRADE_TIMEOUT)
    assert len(cluster.pods_of("Deployment", added.name)) == 1
    answer = run_workflow(cluster, "boot_added", [1, 2, 3])
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["output"] == 6
    answer = run_workflow(cluster, "compute_avg_distributed", [1, 2, 3, 4])
    assert json.loads(answer["body"])["output"] == 2.5
