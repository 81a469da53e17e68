"""What users rely on in the rendered chart: one worker per task, routing, secrets, executor wiring."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_knative.naming import service_name
from airflow_knative.protocol import DEFAULT_WORKER_PORT, LIVENESS_PATH, READINESS_PATH
from airflow_knative.routing import Router
from tests.chart.chart_helpers import (
    CHART,
    CONTAINER_LISTEN_ADDRESS,
    MODES,
    NAMESPACE,
    OFFLINE_SECRETS,
    ROOT,
    VALUES_FILES,
    HelmError,
    Rendered,
    render,
    run_helm,
)

EXECUTOR = "airflow_knative.executor.KnativeExecutor"
DB_ENV = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")


@pytest.fixture(scope="session")
def workflow_tasks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(dag_id, task_id) of every task in workflows/, as Airflow's own parsing sees them."""
    code = (
        "import json; from pathlib import Path; from airflow_knative.inventory import collect_tasks;"
        "print(json.dumps([[e.dag_id, e.task_id] for e in collect_tasks(Path('workflows'))]))"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home"))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return [tuple(pair) for pair in json.loads(result.stdout.strip().splitlines()[-1])]


def workers(result: Rendered, mode: str) -> dict[str, dict[str, Any]]:
    """Rendered worker services by name: Knative Services, or the Deployments of deployment mode."""
    if mode == "knative":
        docs = [d for d in result.component("Service", "worker") if d["apiVersion"].startswith("serving")]
    else:
        docs = result.component("Deployment", "worker")
    return {d["metadata"]["name"]: d for d in docs}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def routing(result: Rendered) -> dict[str, Any]:
    (config_map,) = [d for d in result.of_kind("ConfigMap") if d["metadata"]["name"].endswith("-routing")]
    table: dict[str, Any] = yaml.safe_load(config_map["data"]["routing.yaml"])
    return table


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("mode", MODES)
def test_exactly_one_worker_service_per_task(mode: str, workflow_tasks: list[tuple[str, str]]) -> None:
    rendered_workers = workers(render(None, mode), mode)
    expected = {service_name(dag_id, task_id) for dag_id, task_id in workflow_tasks}
    assert len(expected) == len(workflow_tasks), "workflows/ should have one service per task"
    assert set(rendered_workers) == expected


@pytest.mark.parametrize("values_file", VALUES_FILES)
@pytest.mark.parametrize("mode", MODES)
def test_routing_table_matches_rendered_services(
    values_file: str | None, mode: str, workflow_tasks: list[tuple[str, str]], tmp_path: Path
) -> None:
    result = render(values_file, mode)
    table = routing(result)
    rendered_workers = workers(result, mode)
    routing_file = tmp_path / "routing.json"
    routing_file.write_text(json.dumps(table))
    router = Router(routing_file)
    routed = {(dag, task): router.service_for(dag, task, None) for dag, task in workflow_tasks}
    assert set(routed.values()) == set(rendered_workers)
    for (dag, task), service in routed.items():
        assert router.url_for(dag, task, None) == f"http://{service}.{NAMESPACE}.svc.cluster.local"
    # only what the rules cannot derive is spelt out: task ids, no service names or URLs
    assert set(table) == {"url_template", "dags"}
    assert {(dag, task) for dag, tasks in table["dags"].items() for task in tasks} == set(workflow_tasks)
    if mode == "deployment":
        services = {d["metadata"]["name"]: d for d in result.component("Service", "worker")}
        assert set(services) == set(rendered_workers), "every worker Deployment needs its Service"
        for name, service in services.items():
            (port,) = service["spec"]["ports"]
            assert port["port"] == 80 and port["targetPort"] == "http"
            container = pod_spec(rendered_workers[name])["containers"][0]
            assert container["ports"] == [{"name": "http", "containerPort": DEFAULT_WORKER_PORT}]
            selector = service["spec"]["selector"]
            pod_labels = rendered_workers[name]["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()
            assert (
                sum(selector.items() <= pod_spec_labels.items() for pod_spec_labels in _pod_labels(result))
                == 1
            )


def _pod_labels(result: Rendered) -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"]["labels"] for d in result.of_kind("Deployment")]


@pytest.mark.parametrize("mode", MODES)
def test_workers_get_no_database_credentials(mode: str) -> None:
    result = render(None, mode)
    for name, doc in workers(result, mode).items():
        spec = pod_spec(doc)
        (container,) = spec["containers"]
        env = env_of(container)
        assert not set(DB_ENV) & set(env), f"{name} gets Airflow credentials"
        secret_refs = {
            v["secretKeyRef"]["name"] for v in env.values() if isinstance(v, dict) and "secretKeyRef" in v
        }
        secret_volumes = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert not secret_refs
        assert secret_volumes == {"airflow-airflow-knative-worker-secret"}
        assert env["AIRFLOW_KNATIVE_SECRET_FILE"] == "/opt/airflow/secrets/worker/secret"


@pytest.mark.parametrize("mode", MODES)
def test_worker_container_contract(mode: str) -> None:
    result = render(None, mode)
    api_url = f"http://airflow-airflow-knative-api-server.{NAMESPACE}.svc.cluster.local:8080"
    assert result.named("Service", "airflow-airflow-knative-api-server")["spec"]["ports"][0]["port"] == 8080
    for name, doc in workers(result, mode).items():
        spec = pod_spec(doc)
        (container,) = spec["containers"]
        env = env_of(container)
        assert container["command"] == ["airflow-knative", "worker", "--host", CONTAINER_LISTEN_ADDRESS]
        assert env["AIRFLOW_KNATIVE_EXECUTION_API_URL"] == f"{api_url}/execution/"
        assert container["readinessProbe"]["httpGet"]["path"] == READINESS_PATH
        assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        if mode == "knative":
            assert doc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
            assert int(env["AIRFLOW_KNATIVE_WORKER_CONCURRENCY"]) == spec["containerConcurrency"], name


@pytest.mark.parametrize("mode", MODES)
def test_scheduler_runs_the_knative_executor_with_routing_and_secret_mounted(mode: str) -> None:
    result = render(None, mode)
    (scheduler,) = result.component("Deployment", "scheduler")
    spec = pod_spec(scheduler)
    (container,) = spec["containers"]
    env = env_of(container)
    assert env["AIRFLOW__CORE__EXECUTOR"] == EXECUTOR
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    routing_file = Path(env["AIRFLOW__KNATIVE_EXECUTOR__ROUTING_FILE"])
    assert str(routing_file.parent) == mounts["routing"]
    config_map = result.named("ConfigMap", volumes["routing"]["configMap"]["name"])
    assert routing_file.name in config_map["data"]
    secret_file = Path(env["AIRFLOW__KNATIVE_EXECUTOR__SECRET_FILE"])
    assert str(secret_file.parent) == mounts["worker-secret"]
    assert volumes["worker-secret"]["secret"]["items"] == [{"key": "secret", "path": secret_file.name}]
    for component in ("api-server", "dag-processor", "triggerer"):
        (deployment,) = result.component("Deployment", component)
        assert env_of(pod_spec(deployment)["containers"][0])["AIRFLOW__CORE__EXECUTOR"] == EXECUTOR


def _secret_values(result: Rendered) -> dict[str, str]:
    values = {}
    for secret in result.of_kind("Secret"):
        for key, data in secret.get("data", {}).items():
            values[f"{secret['metadata']['name']}/{key}"] = base64.b64decode(data).decode()
    return values


def test_secrets_are_generated_per_install_and_never_in_plain_objects() -> None:
    first, second = render(None, "knative"), render(None, "deployment")
    secrets = _secret_values(first)
    assert {
        "airflow-airflow-knative-airflow/fernet-key",
        "airflow-airflow-knative-airflow/jwt-secret",
        "airflow-airflow-knative-airflow/api-secret-key",
        "airflow-airflow-knative-admin/password",
        "airflow-airflow-knative-worker-secret/secret",
        "airflow-airflow-knative-metadata/connection",
    } <= set(secrets)
    assert len(base64.urlsafe_b64decode(secrets["airflow-airflow-knative-airflow/fernet-key"])) == 32
    assert len(secrets["airflow-airflow-knative-airflow/jwt-secret"]) >= 32
    assert len(secrets["airflow-airflow-knative-worker-secret/secret"]) >= 16
    other = _secret_values(second)
    for key, value in secrets.items():
        if key.endswith(("/password", "/fernet-key", "/jwt-secret", "/secret")):
            assert other[key] != value, f"{key} is the same in two installs: a fixed secret?"
    plain = "\n".join(yaml.safe_dump(d) for d in first.docs if d["kind"] != "Secret")
    for key, value in secrets.items():
        assert value not in plain, f"{key} appears outside its Secret"


def test_no_secret_values_in_values_files() -> None:
    def walk(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in walk(v, f"{path}.{k}")]
        lowered = path.lower()
        sensitive = any(w in lowered for w in ("password", "fernet", "jwt", "token", "secretkey"))
        return [path] if sensitive and node not in (None, "", {}, []) else []

    for path in [CHART / "values.yaml", *sorted((ROOT / "values").glob("*.yaml"))]:
        assert walk(yaml.safe_load(path.read_text()), path.name) == []


def test_existing_secrets_replace_generated_ones() -> None:
    result = render(
        None,
        "knative",
        True,
        (
            "secrets.existingSecret=my-airflow",
            "secrets.workerExistingSecret=my-worker",
            "auth.admin.existingSecret=my-admin",
        ),
    )
    names = {s["metadata"]["name"] for s in result.of_kind("Secret")}
    assert names == {"airflow-airflow-knative-metadata"}
    text = result.text
    for name in ("my-airflow", "my-worker", "my-admin"):
        assert f"name: {name}" in text or f"secretName: {name}" in text


def test_production_uses_the_external_database() -> None:
    result = render("production.yaml", "knative")
    assert not result.of_kind("StatefulSet")
    (scheduler,) = result.component("Deployment", "scheduler")
    env = env_of(pod_spec(scheduler)["containers"][0])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == {
        "secretKeyRef": {"name": "airflow-metadata", "key": "connection"}
    }
    assert "airflow-airflow-knative-metadata" not in {s["metadata"]["name"] for s in result.of_kind("Secret")}


def test_bundled_database_has_statefulset_service_and_volume() -> None:
    result = render(None, "knative")
    (statefulset,) = result.of_kind("StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert result.named("Service", statefulset["spec"]["serviceName"])


def test_components_wait_for_the_migration_job() -> None:
    result = render(None, "knative")
    jobs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in result.of_kind("Job")}
    assert (
        "airflow db migrate"
        in jobs["migrate-database"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    )
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        (deployment,) = result.component("Deployment", component)
        (init,) = pod_spec(deployment)["initContainers"]
        assert init["command"][:3] == ["airflow", "db", "check-migrations"]


def test_external_database_needs_a_secret() -> None:
    with pytest.raises(HelmError, match=r"database\.externalSecret is required"):
        render(None, "knative", True, ("postgresql.enabled=false",))


@pytest.mark.parametrize("mode", MODES)
def test_per_task_override_without_regenerating(mode: str, generated_services: dict[str, Any]) -> None:
    target = sorted(generated_services)[0]
    result = render(None, mode, True, (f"workers.overrides.{target}.minScale=3",))
    for name, doc in workers(result, mode).items():
        if mode == "knative":
            scale = doc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]
            assert scale == ("3" if name == target else "0")
        else:
            assert doc["spec"]["replicas"] == (3 if name == target else 1)


def test_override_of_an_unknown_service_is_refused() -> None:
    with pytest.raises(
        HelmError, match=r"workers\.overrides\.no-such-service-abc: no generated worker service"
    ):
        render(None, "knative", True, ("workers.overrides.no-such-service-abc.minScale=1",))


@pytest.mark.parametrize(
    ("setting", "key", "message"),
    [
        ("workers.bogus=1", "/workers", "additional properties 'bogus' not allowed"),
        ("workers.defaults.containerConcurrency=-1", "/workers/defaults/containerConcurrency", "minimum"),
        ("workers.defaults.minScale=two", "/workers/defaults/minScale", "want integer"),
        ("workers.mode=lambda", "/workers/mode", ""),
        ("gateway.visibility=internet", "/gateway/visibility", ""),
    ],
)
def test_bad_values_are_rejected_naming_the_key(setting: str, key: str, message: str) -> None:
    result = run_helm(["template", "x", str(CHART), "--set", setting])
    assert result.returncode != 0
    assert key in result.stderr and message in result.stderr, result.stderr


def test_gateway_visibility() -> None:
    def gateway(sets: tuple[str, ...]) -> dict[str, Any]:
        (doc,) = [d for d in render(None, "knative", True, sets).component("Service", "gateway")]
        return doc

    assert "networking.knative.dev/visibility" not in gateway(())["metadata"]["labels"]
    local = gateway(("gateway.visibility=cluster-local",))
    assert local["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    (container,) = pod_spec(local)["containers"]
    assert container["command"] == ["airflow-knative", "gateway", "--host", CONTAINER_LISTEN_ADDRESS]
    assert env_of(container)["AIRFLOW_KNATIVE_AIRFLOW_URL"].startswith(
        "http://airflow-airflow-knative-api-server."
    )


def test_deployment_mode_renders_no_knative_objects() -> None:
    result = render("deployment-mode.yaml", None)
    assert not [d for d in result.docs if d["apiVersion"].startswith("serving.knative.dev")]
    assert result.component("Deployment", "gateway")


def test_helm_test_hook_calls_the_gateway() -> None:
    (pod,) = render(None, "knative").of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][-1] == (
        f"http://airflow-airflow-knative-gateway.{NAMESPACE}.svc.cluster.local/healthz"
    )


@pytest.mark.parametrize("mode", MODES)
def test_task_logs_outlive_workers(mode: str) -> None:
    result = render(None, mode)
    (api_server,) = result.component("Deployment", "api-server")
    claim = {v["name"]: v for v in pod_spec(api_server)["volumes"]}["logs"]["persistentVolumeClaim"][
        "claimName"
    ]
    assert result.named("PersistentVolumeClaim", claim)
    for name, doc in workers(result, mode).items():
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        assert volumes["logs"]["persistentVolumeClaim"]["claimName"] == claim, name
    remote = render(None, mode, True, ("logs.remote.enabled=true", "logs.remote.baseLogFolder=s3://b/logs"))
    for doc in workers(remote, mode).values():
        assert env_of(pod_spec(doc)["containers"][0])["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"


def test_kind_values_keep_failing_pods_visible() -> None:
    for doc in workers(render("kind.yaml", "knative"), "knative").values():
        assert doc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
        assert pod_spec(doc)["containers"][0]["imagePullPolicy"] == "Never"


def test_long_release_names_still_fit() -> None:
    release = "a-very-long-release-name-for-testing-limits-0123456789"[:53]
    result = run_helm(["template", release, str(CHART), "--namespace", NAMESPACE, *OFFLINE_SECRETS])
    assert result.returncode == 0, result.stderr
    for doc in yaml.safe_load_all(result.stdout):
        if doc:
            assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


# -- Precedence: workers.defaults < DAG code (generated data) < workers.overrides ------------------


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    target = tmp_path / "chart"
    shutil.copytree(CHART, target)
    return target


def _write_services(chart: Path, services: dict[str, Any]) -> None:
    (chart / "files" / "services.yaml").write_text(yaml.safe_dump({"services": services}))


def _template(chart: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = ["template", "airflow", str(chart), "--namespace", NAMESPACE, *OFFLINE_SECRETS]
    for item in sets:
        args += ["--set", item]
    return run_helm(args)


def test_dag_settings_sit_between_defaults_and_overrides(chart_copy: Path) -> None:
    tasks = [{"dagId": "d", "taskId": "t"}]
    _write_services(
        chart_copy,
        {"svc-a": {"tasks": tasks, "minScale": 2, "containerConcurrency": 4, "timeoutSeconds": 120}},
    )
    result = _template(chart_copy, "workers.overrides.svc-a.containerConcurrency=8")
    assert result.returncode == 0, result.stderr
    (ksvc,) = [
        d
        for d in yaml.safe_load_all(result.stdout)
        if d and d["kind"] == "Service" and d["metadata"]["name"] == "svc-a"
    ]
    template = ksvc["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "2"  # DAG code
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "10"  # default
    assert template["spec"]["containerConcurrency"] == 8  # override
    assert template["spec"]["timeoutSeconds"] == 120
    assert ksvc["metadata"]["annotations"]["airflow-knative/tasks"] == "d.t"


def test_too_long_timeout_and_inverted_scale_fail_at_render(chart_copy: Path) -> None:
    _write_services(chart_copy, {"svc-a": {"tasks": [{"dagId": "d", "taskId": "t"}], "timeoutSeconds": 3600}})
    result = _template(chart_copy)
    assert result.returncode != 0
    assert "svc-a" in result.stderr and "workers.maxTimeoutSeconds" in result.stderr
    _write_services(chart_copy, {"svc-a": {"tasks": [{"dagId": "d", "taskId": "t"}]}})
    result = _template(chart_copy, "workers.overrides.svc-a.minScale=5", "workers.overrides.svc-a.maxScale=2")
    assert result.returncode != 0 and "minScale 5 is above maxScale 2" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_notes_tell_how_to_reach_the_gateway_and_read_the_password(mode: str, tmp_path: Path) -> None:
    result = run_helm(
        [
            "install",
            "airflow",
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--set",
            f"workers.mode={mode}",
            "--kubeconfig",
            str(tmp_path / "none"),
            *OFFLINE_SECRETS,
        ]
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "get secret --namespace airflow airflow-airflow-knative-admin" in notes
    assert "base64 -d" in notes
    if mode == "knative":
        assert "get ksvc --namespace airflow airflow-airflow-knative-gateway" in notes
        assert "config-features" in notes
    else:
        assert "port-forward --namespace airflow svc/airflow-airflow-knative-gateway" in notes
