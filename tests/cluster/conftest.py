"""Cluster tests (marker `cluster`): a kind cluster with Knative (`make kind-up`), skipped without one.

`make kind-test` builds the image, loads it into kind and runs these. pytest-helm-charts
gives the cluster connection (`kube_cluster`, from $KUBECONFIG or --kube-config); the
chart is installed with the pinned helm, as a user would, and everything else goes
through kubectl and the release's own endpoints.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "airflow"
FULLNAME = "airflow-airflow-knative"
IMAGE = os.environ.get("IMAGE", "airflow-knative:dev")
KIND_CLUSTER = os.environ.get("KIND_CLUSTER", "airflow-knative")
INSTALL_TIMEOUT = "15m"


def cluster_unreachable_reason() -> str | None:
    """Return why no cluster can be used, or None when `kubectl` reaches one."""
    config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(config).is_file():
        return f"no kubeconfig at {config}: create a kind cluster with Knative first (make kind-up)"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl not on PATH"
    probe = subprocess.run(
        [kubectl, "--kubeconfig", config, "version", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cluster in {config} not reachable: {probe.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            reason = reason or cluster_unreachable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def run(args: Sequence[str], timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with a bound on its time; a failure shows its output."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def kubectl(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["kubectl", *args], timeout=timeout, check=check)


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def helm(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    from tests.chart.chart_helpers import find_helm

    return run([find_helm(), *args], timeout=timeout)


@contextlib.contextmanager
def port_forward(namespace: str, target: str, remote_port: int) -> Iterator[str]:
    """`kubectl port-forward` to 127.0.0.1:<free port>; yields the base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            "kubectl",
            "port-forward",
            "-n",
            namespace,
            target,
            f"{port}:{remote_port}",
            "--address",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, (
                f"port-forward to {target} ended: {process.stdout.read() if process.stdout else ''}"
            )
            time.sleep(0.5)
        else:
            raise AssertionError(f"port-forward to {namespace}/{target} did not open in 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Release:
    """One installed release: how to call its gateway and read its state."""

    namespace: str
    mode: str

    def admin_password(self) -> str:
        secret = kubectl_json("get", "secret", "-n", self.namespace, f"{FULLNAME}-admin")
        return base64.b64decode(secret["data"]["password"]).decode()

    @contextlib.contextmanager
    def gateway(self) -> Iterator[httpx.Client]:
        """An HTTP client for the gateway: through Kourier with the Host header (Knative), or its Service."""
        auth = ("admin", self.admin_password())
        if self.mode == "knative":
            url = kubectl_json("get", "ksvc", "-n", self.namespace, f"{FULLNAME}-gateway")["status"]["url"]
            host = httpx.URL(url).host
            with port_forward("kourier-system", "svc/kourier", 80) as base:
                yield httpx.Client(base_url=base, headers={"Host": host}, auth=auth, timeout=300)
        else:
            with port_forward(self.namespace, f"svc/{FULLNAME}-gateway", 80) as base:
                yield httpx.Client(base_url=base, auth=auth, timeout=300)

    def run_workflow(self, dag_id: str, data: Any) -> httpx.Response:
        with self.gateway() as client:
            return client.post(f"/runWorkflow/{dag_id}", json={"input": data})


def install(namespace: str, *extra: str, chart: Path = ROOT / "chart") -> None:
    """helm upgrade --install with values/kind.yaml, waiting until every object is ready."""
    repository, _, tag = IMAGE.rpartition(":")
    helm(
        "upgrade", "--install", RELEASE, str(chart), "--namespace", namespace, "--create-namespace",
        "-f", str(ROOT / "values" / "kind.yaml"),
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        *extra, "--wait", "--timeout", INSTALL_TIMEOUT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def knative_release(kube_cluster: Any) -> Iterator[Release]:
    namespace = "airflow-knative-test"
    install(namespace)
    yield Release(namespace, "knative")
    helm("uninstall", RELEASE, "--namespace", namespace, "--wait")
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def deployment_release(kube_cluster: Any) -> Iterator[Release]:
    from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

    namespace = "airflow-knative-deploy"
    install(namespace, "-f", str(ROOT / "values" / "deployment-mode.yaml"))
    names = [d["metadata"]["name"] for d in kubectl_json("get", "deployments", "-n", namespace)["items"]]
    wait_for_deployments_to_run(kube_cluster.kube_client, names, namespace, timeout_sec=600)
    yield Release(namespace, "deployment")
    helm("uninstall", RELEASE, "--namespace", namespace, "--wait")
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
