"""The manifest -> podman translation, on real `helm template` output (no engine needed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from airflow_knative.routing import RoutingTable
from tests.chart.chart_helpers import NAMESPACE, VALUES_FILES, render
from tests.containers.kube_podman import (
    ClaimVolume,
    EmptyDirVolume,
    FilesVolume,
    Release,
    TranslationError,
    expand,
    podman_run_args,
)

BOOT_VALUES = Path(__file__).resolve().parent / "boot-values.yaml"


def deployment_release(values_file: str | None = None) -> Release:
    return Release(render(values_file, "deployment").docs, NAMESPACE)


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str:
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("values_file", [v for v in VALUES_FILES if v != "production.yaml"])
def test_every_object_of_a_deployment_mode_rendering_translates(values_file: str | None) -> None:
    release = deployment_release(values_file)
    assert release.workloads and release.services
    for workload in release.workloads.values():
        plan = release.pod(workload, "pod-0")
        assert plan.containers, workload.name


def test_knative_services_are_refused_with_their_name() -> None:
    with pytest.raises(TranslationError, match="no podman translation for this kind"):
        Release(render(None, "knative").docs, NAMESPACE)


def test_env_resolves_secret_keys_to_their_values() -> None:
    docs = render(None, "deployment").docs
    release = Release(docs, NAMESPACE)
    scheduler = release.workloads["Deployment/airflow-airflow-knative-scheduler"]
    (container,) = release.pod(scheduler, "scheduler-0").containers
    connection = secret_value(docs, "airflow-airflow-knative-metadata", "connection")
    assert container.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == connection
    assert container.env["AIRFLOW__CORE__EXECUTOR"] == "airflow_knative.executor.KnativeExecutor"


def test_containers_keep_command_user_and_security_context() -> None:
    docs = render(None, "deployment").docs
    release = Release(docs, NAMESPACE)
    for workload in release.workloads.values():
        plan = release.pod(workload, "p")
        manifests = workload.pod_spec["containers"]
        for run, manifest in zip(plan.containers, manifests, strict=True):
            assert run.command == manifest.get("command"), workload.name
            assert run.image == manifest["image"]
            security = {
                **(workload.pod_spec.get("securityContext") or {}),
                **(manifest.get("securityContext") or {}),
            }
            if "runAsUser" in security:
                assert run.user is not None and run.user.split(":")[0] == str(security["runAsUser"])
            if "ALL" in (security.get("capabilities") or {}).get("drop", []):
                assert "--cap-drop=ALL" in run.security
            if security.get("allowPrivilegeEscalation") is False:
                assert "no-new-privileges" in run.security
            assert ("--read-only" in run.security) == bool(security.get("readOnlyRootFilesystem"))


def test_every_routing_url_is_a_service_dns_name_with_its_port() -> None:
    release = deployment_release()
    (routing,) = [v for k, v in release.config_maps.items() if k.endswith("-routing")]
    table = RoutingTable.model_validate(json.loads(routing["routing.yaml"]))
    names = {dns: s for s in release.services.values() for dns in s.dns_names}
    assert table.known_services()
    for service in table.known_services():
        url = urlparse(table.url_of(service) or "")
        assert url.hostname in names, f"{service}: {url.hostname} is no Service DNS name"
        ports = dict(names[url.hostname].ports)
        assert (url.port or 80) in ports
        assert ports[url.port or 80] == 8080  # the worker container's port


def test_volumes_become_files_empty_dirs_and_claims() -> None:
    release = deployment_release()
    scheduler = release.workloads["Deployment/airflow-airflow-knative-scheduler"]
    plan = release.pod(scheduler, "s")
    routing = plan.volumes["routing"]
    assert isinstance(routing, FilesVolume) and set(routing.files) == {"routing.yaml"}
    assert isinstance(plan.volumes["worker-secret"], FilesVolume)
    assert isinstance(plan.volumes["logs"], ClaimVolume)
    postgres = release.workloads["StatefulSet/airflow-airflow-knative-postgresql"]
    pg_plan = release.pod(postgres, "pg-0", 0)
    assert pg_plan.volumes["data"] == ClaimVolume("data-airflow-airflow-knative-postgresql-0")
    assert isinstance(pg_plan.volumes["run"], EmptyDirVolume)


def test_run_args_carry_no_env_value_and_mount_every_volume() -> None:
    release = deployment_release()
    scheduler = release.workloads["Deployment/airflow-airflow-knative-scheduler"]
    plan = release.pod(scheduler, "s")
    (run,) = plan.containers
    sources = {name: f"/state/{name}" for name in plan.volumes}
    args = podman_run_args(run, plan, "net", sources)
    text = " ".join(args)
    connection = run.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert connection not in text
    assert "--env AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in text
    assert "type=bind,source=/state/logs,destination=/opt/airflow/logs" in text
    assert "type=bind,source=/state/routing,destination=/opt/airflow/knative,ro" in text
    assert args[args.index("--entrypoint") + 1] == json.dumps(run.command)


def test_read_only_root_filesystem_gets_no_extra_tmpfs() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsUser": 5, "runAsNonRoot": True},
            "containers": [{"name": "c", "image": "i", "securityContext": {"readOnlyRootFilesystem": True}}],
        },
    }
    release = Release([doc], "ns")
    (run,) = release.pod(release.workloads["Pod/p"], "p").containers
    assert run.security[:2] == ["--read-only", "--read-only-tmpfs=false"]


def test_run_as_non_root_without_a_user_is_refused() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [{"name": "c", "image": "i"}]},
    }
    release = Release([doc], "ns")
    with pytest.raises(TranslationError, match="runAsNonRoot"):
        release.pod(release.workloads["Pod/p"], "p")


def test_kubernetes_variable_expansion() -> None:
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)-$(seq 1 3)", env) == "x-$(B)-$(A)-$(seq 1 3)"


def test_upgrade_keeps_the_installed_secrets() -> None:
    first = deployment_release()
    second = Release(render(None, "deployment").docs, NAMESPACE, keep_secrets_of=first)
    assert second.secrets == first.secrets


def test_boot_values_render_in_deployment_mode() -> None:
    assert BOOT_VALUES.is_file()
