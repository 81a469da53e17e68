"""The release on a real cluster (kind + Knative, `make kind-test`); skipped without one.

In file order: install (values/kind.yaml), every Knative Service Ready, the gateway
answers 2.5, `helm test`, a min-scale 0 service goes to zero and comes back, an added
DAG runs after `helm upgrade`, a scheduler deleted mid-task does not run the task
twice; and deployment mode in its own namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from airflow_knative.local.processes import wait_until
from tests.cluster.conftest import (
    FULLNAME,
    KIND_CLUSTER,
    RELEASE,
    ROOT,
    Release,
    helm,
    install,
    kubectl,
    kubectl_json,
    port_forward,
)

pytestmark = pytest.mark.cluster
ADDED_IMAGE = "airflow-knative:cluster-added"


def service_for(namespace: str, dag_id: str, task_id: str) -> str:
    for ksvc in kubectl_json("get", "ksvc", "-n", namespace)["items"]:
        tasks = ksvc["metadata"].get("annotations", {}).get("airflow-knative/tasks", "")
        if f"{dag_id}.{task_id}" in tasks.split(", "):
            return str(ksvc["metadata"]["name"])
    raise AssertionError(f"no Knative Service serves {dag_id}.{task_id}")


def test_every_knative_service_is_ready(knative_release: Release) -> None:
    services = kubectl_json("get", "ksvc", "-n", knative_release.namespace)["items"]
    assert len(services) > 1
    not_ready = [
        s["metadata"]["name"]
        for s in services
        if not any(
            c["type"] == "Ready" and c["status"] == "True" for c in s.get("status", {}).get("conditions", [])
        )
    ]
    assert not not_ready, f"not Ready: {not_ready}"


def test_gateway_gives_the_average(knative_release: Release) -> None:
    response = knative_release.run_workflow("compute_avg_distributed", [1, 2, 3, 4])
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 2.5


def test_helm_test_passes(knative_release: Release) -> None:
    helm("test", RELEASE, "--namespace", knative_release.namespace, "--timeout", "5m")


def test_min_scale_zero_service_scales_to_zero_and_comes_back(knative_release: Release) -> None:
    namespace = knative_release.namespace
    service = service_for(namespace, "compute_avg_distributed", "do_avg")
    install(namespace, "--set", f"workers.overrides.{service}.minScale=0")

    def pods() -> list[Any]:
        selector = f"serving.knative.dev/service={service}"
        items: list[Any] = kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
        return items

    # Knative's stable window (60 s) and scale-to-zero grace period (30 s) by default.
    wait_until(lambda: not pods(), 600, f"{service} to scale to zero", interval=5)
    response = knative_release.run_workflow("compute_avg_distributed", [1, 2, 3, 4])
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 2.5


def build_added_release(tmp_path: Path) -> Path:
    """A checkout with one more DAG: `make generate`, `make kind-load` - what the README tells users."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    for tool in (".venv", ".tools"):
        (checkout / tool).symlink_to(ROOT / tool)
    shutil.copy(ROOT / "tests" / "cluster" / "dags" / "cluster_added.py", checkout / "workflows")
    env = {**os.environ, "IMAGE": ADDED_IMAGE, "KIND_CLUSTER": KIND_CLUSTER}
    for target in ("generate", "kind-load"):
        subprocess.run(
            ["make", target, f"IMAGE={ADDED_IMAGE}"], cwd=checkout, env=env, check=True, timeout=3600
        )
    return checkout


def test_upgrade_with_a_new_dag_runs_it(knative_release: Release, tmp_path: Path) -> None:
    checkout = build_added_release(tmp_path)
    repository, _, tag = ADDED_IMAGE.rpartition(":")
    install(
        knative_release.namespace,
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        chart=checkout / "chart",
    )  # fmt: skip
    assert service_for(knative_release.namespace, "cluster_added", "slow_double")
    response = knative_release.run_workflow("cluster_added", {"value": 21, "sleep": 0})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 42


def airflow_token(base: str, password: str) -> str:
    response = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["access_token"])


def test_scheduler_deleted_mid_task_does_not_run_it_twice(knative_release: Release) -> None:
    namespace = knative_release.namespace
    with knative_release.gateway() as gateway:
        started = gateway.post(
            "/runWorkflow/cluster_added?wait=false", json={"input": {"value": 5, "sleep": 45}}
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        status_url = started.json()["status_url"]
    with port_forward(namespace, f"svc/{FULLNAME}-api-server", 8080) as api:
        headers = {"Authorization": f"Bearer {airflow_token(api, knative_release.admin_password())}"}
        instance = (
            f"{api}/api/v2/dags/cluster_added/dagRuns/{quote(run_id, safe='')}/taskInstances/slow_double"
        )

        def state() -> Any:
            return httpx.get(instance, headers=headers, timeout=30).json()

        wait_until(lambda: state().get("state") == "running", 300, "slow_double to run", interval=1)
        kubectl(
            "delete", "pod", "-n", namespace, "-l", "app.kubernetes.io/component=scheduler", "--wait=false"
        )
        final = wait_until(
            lambda: (s := state()).get("state") in ("success", "failed", "up_for_retry") and s,
            600,
            "slow_double to end after the scheduler restart",
            interval=5,
        )
        assert final["state"] == "success", final
        assert final["try_number"] == 1, f"the task ran again after the scheduler was deleted: {final}"
    with knative_release.gateway() as gateway:
        result = gateway.get(httpx.URL(status_url).raw_path.decode())
        assert result.status_code == 200 and result.json()["output"] == 10, result.text


def test_deployment_mode_works(deployment_release: Release) -> None:
    assert not kubectl_json("get", "ksvc", "-n", deployment_release.namespace)["items"]
    response = deployment_release.run_workflow("compute_avg_distributed", [1, 2, 3, 4])
    assert response.status_code == 200, response.text
    assert response.json()["output"] == 2.5
    helm("test", RELEASE, "--namespace", deployment_release.namespace, "--timeout", "5m")
