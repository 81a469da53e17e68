"""Time limits and task logs the chart must make agree with the executor and the gateway."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_helpers import render


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("timeout", [None, 120, 900])
def test_gateway_wait_ends_before_its_knative_timeout(timeout: int | None) -> None:
    """Callers always get the run_id and status URL (504) before Knative cuts the request."""
    sets = () if timeout is None else (f"gateway.timeoutSeconds={timeout}",)
    result = render(None, "knative", sets=sets)
    (service,) = [
        d for d in result.of_kind("Service", "serving.knative.dev") if "gateway" in d["metadata"]["name"]
    ]
    spec = service["spec"]["template"]["spec"]
    (container,) = spec["containers"]

    knative_timeout = spec["timeoutSeconds"]
    wait = float(_env(container)["AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT"])

    assert knative_timeout == (timeout or 300)
    assert wait < knative_timeout


def test_scheduler_and_api_server_share_the_task_logs_volume() -> None:
    """The executor writes why a task never ran into its task log; the API server must read that file."""
    result = render(None, "knative")
    mounts = {}
    for component in ("scheduler", "api-server"):
        (deployment,) = result.component("Deployment", component)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        logs = next(m for m in container["volumeMounts"] if m["name"] == "logs")
        mounts[component] = (logs["mountPath"], volumes["logs"].get("persistentVolumeClaim"))
        assert (
            _env(container).get("AIRFLOW__LOGGING__BASE_LOG_FOLDER", logs["mountPath"]) == logs["mountPath"]
        )
    assert mounts["scheduler"] == mounts["api-server"]
