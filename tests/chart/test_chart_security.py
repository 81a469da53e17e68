"""Hardening of every rendering: checkov finds nothing, and what checkov cannot see is asserted here.

checkov (`make tools`, pinned in requirements/tools.txt) scans Deployments, StatefulSets,
Jobs and Pods but reads a Knative Service as a plain Service, so the pod templates of
Knative workers and the gateway are checked by the assertions below, in both modes.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_helpers import (
    CHART,
    MODES,
    NAMESPACE,
    ROOT,
    VALUES_FILES,
    HelmError,
    Rendered,
    render,
    run_helm,
)

COMBINATIONS = list(itertools.product(VALUES_FILES, MODES))
#: Checks the chart skips, each with its reason next to it (checkov.io/skipN annotations).
ALLOWED_SKIPS = {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_35", "CKV_K8S_9", "CKV_K8S_8", "CKV_K8S_40"}
DIGEST = "sha256:" + "ab" * 32


def _name(values_file: str | None, mode: str) -> str:
    return f"{(values_file or 'defaults.yaml').removesuffix('.yaml')}-{mode}"


def find_checkov() -> str:
    candidates = [os.environ.get("CHECKOV"), str(ROOT / ".tools" / "venv" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("checkov not found: run `make tools` (installs requirements/tools.txt into .tools/venv)")


@pytest.fixture(scope="session")
def checkov_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """One checkov run over every values file x worker mode; results by rendering name."""
    folder = tmp_path_factory.mktemp("renderings")
    for values_file, mode in COMBINATIONS:
        (folder / f"{_name(values_file, mode)}.yaml").write_text(render(values_file, mode).text)
    command = [
        find_checkov(),
        "--framework",
        "kubernetes",
        "-d",
        str(folder),
        "--output",
        "json",
        "--compact",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    by_file: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for part in reports:
        for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in part["results"].get(outcome, []):
                name = Path(check["file_path"]).stem
                by_file.setdefault(name, {}).setdefault(outcome, []).append(check)
    return by_file


@pytest.mark.parametrize(("values_file", "mode"), COMBINATIONS)
def test_checkov_finds_no_failed_check(
    checkov_results: dict[str, dict[str, list[dict[str, Any]]]], values_file: str | None, mode: str
) -> None:
    results = checkov_results[_name(values_file, mode)]
    assert len(results.get("passed_checks", [])) > 500, "checkov checked (almost) nothing"
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in results.get("failed_checks", [])]
    assert not failed, "\n".join(failed)
    for check in results.get("skipped_checks", []):
        assert check["check_id"] in ALLOWED_SKIPS, f"{check['check_id']} skipped on {check['resource']}"
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} skipped without a reason"


def test_a_pinned_digest_needs_no_digest_skip() -> None:
    result = render(None, "deployment", True, (f"image.digest={DIGEST}", f"postgresql.image.digest={DIGEST}"))
    for doc in result.docs:
        annotations = doc["metadata"].get("annotations", {})
        skips = [v for k, v in annotations.items() if k.startswith("checkov.io/skip")]
        assert not [s for s in skips if s.startswith("CKV_K8S_43=")], doc["metadata"]["name"]


# -- Pod templates, Knative Services included ------------------------------------------------------


def pod_specs(result: Rendered) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod metadata, pod spec) of every workload, Knative Services and the test Pod included."""
    for doc in result.docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            yield where, doc["metadata"], doc["spec"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "Job") or doc["apiVersion"].startswith("serving."):
            template = doc["spec"]["template"]
            yield where, template.get("metadata", {}), template["spec"]


def long_running(where: str) -> bool:
    return not where.startswith(("Job ", "Pod "))


@pytest.mark.parametrize(("values_file", "mode"), COMBINATIONS)
def test_every_container_is_read_only_non_root_and_limited(values_file: str | None, mode: str) -> None:
    problems = []
    for where, _, spec in pod_specs(render(values_file, mode)):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where} container {container['name']}"
            security = container.get("securityContext", {})
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if security.get("allowPrivilegeEscalation") is not False or security.get("capabilities") != {
                "drop": ["ALL"]
            }:
                problems.append(f"{at}: may escalate or keeps capabilities")
            if not (security.get("runAsNonRoot") or spec.get("securityContext", {}).get("runAsNonRoot")):
                problems.append(f"{at}: may run as root")
            resources = container.get("resources", {})
            for kind, resource in itertools.product(("requests", "limits"), ("cpu", "memory")):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{at}: no {kind}.{resource}")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
                problems.append(f"{at}: /tmp is not a writable emptyDir")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("values_file", "mode"), COMBINATIONS)
def test_every_long_running_container_has_probes(values_file: str | None, mode: str) -> None:
    problems = []
    for where, metadata, spec in pod_specs(render(values_file, mode)):
        if not long_running(where):
            continue
        for container in spec["containers"]:
            probes = {p for p in ("livenessProbe", "readinessProbe", "startupProbe") if p in container}
            component = metadata.get("labels", {}).get("app.kubernetes.io/component")
            serving = component in ("api-server", "worker", "gateway", "postgresql")
            needed = {"livenessProbe", "readinessProbe"} if serving else {"livenessProbe", "startupProbe"}
            if not needed <= probes:
                problems.append(
                    f"{where}: {container['name']} has probes {sorted(probes)}, needs {sorted(needed)}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", MODES)
def test_probes_use_real_airflow_endpoints_and_commands(mode: str) -> None:
    result = render(None, mode)

    def container(component: str) -> dict[str, Any]:
        (doc,) = result.component("Deployment", component)
        main: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
        return main

    api = container("api-server")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] == "/api/v2/monitor/health"
    for component, job in (
        ("scheduler", "SchedulerJob"),
        ("dag-processor", "DagProcessorJob"),
        ("triggerer", "TriggererJob"),
    ):
        for probe in ("startupProbe", "livenessProbe"):
            command = container(component)[probe]["exec"]["command"]
            assert command == ["airflow", "jobs", "check", "--job-type", job, "--local"], component


@pytest.mark.parametrize("mode", MODES)
def test_airflow_finds_its_config_file_without_writing_one(mode: str) -> None:
    """The `airflow` command writes airflow.cfg when AIRFLOW_CONFIG names no file: point it at a ConfigMap."""
    result = render(None, mode)
    for where, _, spec in pod_specs(result):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "AIRFLOW_CONFIG" not in env:
                assert container.get("command", ["postgres"])[0] not in ("airflow", "bash"), (
                    f"{where}: airflow without a config"
                )
                continue
            config = Path(env["AIRFLOW_CONFIG"])
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config.parent)]
            config_map = result.named("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
            assert config.name in config_map["data"], where


def test_image_digest_wins_over_the_tag() -> None:
    result = render(None, "knative", True, (f"image.digest={DIGEST}", "image.tag=ignored"))
    images = {
        c["image"]
        for _, _, spec in pod_specs(result)
        for c in spec.get("initContainers", []) + spec["containers"]
    }
    assert images == {f"airflow-knative@{DIGEST}", "postgres:16"}
    result = render(None, "knative", True, (f"postgresql.image.digest={DIGEST}",))
    (statefulset,) = result.of_kind("StatefulSet")
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == f"postgres@{DIGEST}"


def test_a_malformed_digest_is_refused() -> None:
    result = run_helm(["template", "x", str(CHART), "--set", "image.digest=latest"])
    assert result.returncode != 0 and "/image/digest" in result.stderr, result.stderr


def test_a_component_without_cpu_limit_is_refused() -> None:
    result = run_helm(["template", "x", str(CHART), "--set", "scheduler.resources.limits.cpu=null"])
    assert result.returncode != 0 and "/scheduler/resources/limits" in result.stderr, result.stderr


# -- Secrets where `lookup` sees nothing -----------------------------------------------------------

EXISTING = (
    "secrets.existingSecret=my-airflow",
    "secrets.workerExistingSecret=my-worker",
    "auth.admin.existingSecret=my-admin",
    "postgresql.existingSecret=my-postgresql",
)


def test_offline_render_refuses_to_generate_secrets_and_names_the_values() -> None:
    result = run_helm(["template", "airflow", str(CHART), "--namespace", NAMESPACE])
    assert result.returncode != 0
    for value in (*(s.split("=")[0] for s in EXISTING), "secrets.generateWithoutCluster=true"):
        assert value in result.stderr, value


def test_offline_install_dry_run_refuses_too(tmp_path: Path) -> None:
    result = run_helm(
        ["install", "airflow", str(CHART), "--dry-run=client", "--kubeconfig", str(tmp_path / "none")]
    )
    assert result.returncode != 0 and "cannot see the cluster" in result.stderr, result.stderr


def test_existing_secrets_render_offline_with_no_generated_secret() -> None:
    args = ["template", "airflow", str(CHART), "--namespace", NAMESPACE]
    for item in EXISTING:
        args += ["--set", item]
    result = run_helm(args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "my-postgresql", "key": "password"} in [
        e.get("valueFrom", {}).get("secretKeyRef") for e in env
    ]
    scheduler = next(
        d for d in docs if d["metadata"]["name"].endswith("-scheduler") and d["kind"] == "Deployment"
    )
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in scheduler["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs == {"my-postgresql", "my-airflow"}


# -- NetworkPolicies --------------------------------------------------------------------------------

Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        present, value = expression["key"] in labels, labels.get(expression["key"])
        allowed = {
            "In": present and value in expression.get("values", []),
            "NotIn": not present or value not in expression.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expression["operator"]]
        if not allowed:
            return False
    return True


def _peer_allows(peer: dict[str, Any], policy_namespace: str, source: Pod) -> bool:
    namespace, labels = source
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        namespace_ok = namespace == policy_namespace
    return namespace_ok and _selects(peer.get("podSelector"), labels)


def allowed(result: Rendered, target: Pod, source: Pod, port: int) -> bool:
    """Whether the rendered NetworkPolicies let ``source`` connect to ``target`` on ``port``.

    Kubernetes semantics: a pod selected by no ingress policy is open; otherwise the union of
    the rules of the policies that select it decides.
    """
    policies = [
        p
        for p in result.of_kind("NetworkPolicy")
        if p["metadata"]["namespace"] == target[0] and _selects(p["spec"]["podSelector"], target[1])
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get("from")
            if ports and port not in ports:
                continue
            if peers is None or any(_peer_allows(peer, target[0], source) for peer in peers):
                return True
    return False


def pod_labels(result: Rendered, component: str) -> dict[str, str]:
    for _, metadata, _ in pod_specs(result):
        if metadata.get("labels", {}).get("app.kubernetes.io/component") == component:
            labels: dict[str, str] = metadata["labels"]
            return labels
    raise AssertionError(f"no pod of component {component}")


@cache
def _pods(mode: str, sets: tuple[str, ...] = ()) -> tuple[Rendered, dict[str, Pod]]:
    result = render(None, mode, True, sets)
    components = ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "gateway", "postgresql")
    components += ("migrate-database", "create-user", "test")
    return result, {c: (NAMESPACE, pod_labels(result, c)) for c in components}


ACTIVATOR: Pod = ("knative-serving", {"app": "activator"})
AUTOSCALER: Pod = ("knative-serving", {"app": "autoscaler"})
KOURIER: Pod = ("kourier-system", {"app": "3scale-kourier-gateway"})
STRANGER: Pod = ("other", {"app": "curious"})


@pytest.mark.parametrize("mode", MODES)
def test_every_pod_of_the_release_is_under_a_policy(mode: str) -> None:
    result, pods = _pods(mode)
    for component, pod in pods.items():
        assert not allowed(result, pod, STRANGER, 8080), f"{component} is open to any pod"
        assert not allowed(result, pod, (NAMESPACE, {"app": "other"}), 8080), component


def test_deployment_mode_workers_accept_only_the_scheduler() -> None:
    result, pods = _pods("deployment")
    worker = pods["worker"]
    assert allowed(result, worker, pods["scheduler"], 8080)
    for other in ("api-server", "gateway", "dag-processor", "triggerer", "postgresql", "test"):
        assert not allowed(result, worker, pods[other], 8080), other
    assert not allowed(result, worker, ACTIVATOR, 8012)


def test_knative_mode_workers_accept_only_knative_data_path() -> None:
    """A request to a Knative Service arrives from the ingress gateway or the activator, never its caller."""
    result, pods = _pods("knative")
    worker = pods["worker"]
    for port in (8012, 8013, 8112):
        assert allowed(result, worker, ACTIVATOR, port)
        assert allowed(result, worker, KOURIER, port)
    assert allowed(result, worker, AUTOSCALER, 9090)
    assert not allowed(result, worker, AUTOSCALER, 8012)
    assert not allowed(result, worker, KOURIER, 8080), "the user container is reached through queue-proxy"
    assert not allowed(result, worker, ("knative-serving", {"app": "controller"}), 8012)
    for other in ("scheduler", "api-server", "gateway"):
        assert not allowed(result, worker, pods[other], 8012), other
    istio, _ = _pods("knative", ("networkPolicies.knative.ingressNamespaces={istio-system}",))
    assert allowed(istio, worker, ("istio-system", {}), 8012)
    assert not allowed(istio, worker, KOURIER, 8012)


@pytest.mark.parametrize("mode", MODES)
def test_postgresql_accepts_only_airflow_components(mode: str) -> None:
    result, pods = _pods(mode)
    database = pods["postgresql"]
    for component in (
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "migrate-database",
        "create-user",
    ):
        assert allowed(result, database, pods[component], 5432), component
    for component in ("worker", "gateway", "test"):
        assert not allowed(result, database, pods[component], 5432), component


@pytest.mark.parametrize("mode", MODES)
def test_api_server_accepts_workers_components_gateway_and_configured_peers(mode: str) -> None:
    result, pods = _pods(mode)
    api = pods["api-server"]
    for component in ("worker", "scheduler", "dag-processor", "triggerer", "gateway"):
        assert allowed(result, api, pods[component], 8080), component
    for component in ("postgresql", "test"):
        assert not allowed(result, api, pods[component], 8080), component
    assert not allowed(result, api, KOURIER, 8080)
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    opened = _render_json(mode, "apiServer.networkPolicy.from", [peer])
    assert allowed(opened, api, ("ingress-nginx", {}), 8080)
    assert not allowed(opened, api, STRANGER, 8080)


def _render_json(mode: str, key: str, value: Any) -> Rendered:
    args = ["template", "airflow", str(CHART), "--namespace", NAMESPACE, "--set", f"workers.mode={mode}"]
    args += ["--set", "secrets.generateWithoutCluster=true", "--set-json", f"{key}={json.dumps(value)}"]
    result = run_helm(args)
    if result.returncode != 0:
        raise HelmError(result.stderr)
    return Rendered(docs=[d for d in yaml.safe_load_all(result.stdout) if d], text=result.stdout)


def test_gateway_is_reached_where_values_say() -> None:
    result, pods = _pods("deployment")
    gateway = pods["gateway"]
    assert allowed(result, gateway, pods["test"], 8000)
    assert not allowed(result, gateway, STRANGER, 8000)
    assert not allowed(result, gateway, pods["worker"], 8000)
    everyone = _render_json("deployment", "gateway.networkPolicy.from", [{"namespaceSelector": {}}])
    assert allowed(everyone, gateway, STRANGER, 8000)
    knative, kpods = _pods("knative")
    assert allowed(knative, kpods["gateway"], KOURIER, 8012)
    assert allowed(knative, kpods["gateway"], ACTIVATOR, 8012)
    assert not allowed(knative, kpods["gateway"], STRANGER, 8012)


def test_policies_can_be_turned_off() -> None:
    assert not render(None, "knative", True, ("networkPolicies.enabled=false",)).of_kind("NetworkPolicy")


def test_bad_peer_is_refused_naming_the_key() -> None:
    result = run_helm(["template", "x", str(CHART), "--set", "gateway.networkPolicy.from[0].podSelectr.a=b"])
    assert result.returncode != 0 and "/gateway/networkPolicy/from/0" in result.stderr, result.stderr
