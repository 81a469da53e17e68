"""Metrics in the chart: scrape annotations, who may scrape, and Airflow's StatsD settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_helpers import MODES, HelmError, Rendered, render

GATEWAY_PORT = 8000
WORKER_PORT = 8080
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
MONITORING_SET = (
    "metrics.prometheus.networkPolicy.from[0].namespaceSelector.matchLabels."
    "kubernetes\\.io/metadata\\.name=monitoring"
)


def scraped_pods(result: Rendered, mode: str) -> list[dict[str, Any]]:
    """The pod templates of every worker service and the gateway."""
    if mode == "knative":
        docs = [d for d in result.of_kind("Service", "serving")]
    else:
        docs = result.component("Deployment", "worker") + result.component("Deployment", "gateway")
    return [d["spec"]["template"] for d in docs]


def policy(result: Rendered, component: str) -> dict[str, Any]:
    (doc,) = result.component("NetworkPolicy", component)
    return doc


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("mode", MODES)
def test_workers_and_gateway_are_annotated_for_prometheus(mode: str) -> None:
    pods = scraped_pods(render(None, mode, True), mode)

    assert len(pods) > 1
    for pod in pods:
        annotations = pod["metadata"]["annotations"]
        is_gateway = pod["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(GATEWAY_PORT if is_gateway else WORKER_PORT)


@pytest.mark.parametrize("mode", MODES)
def test_scrape_annotations_can_be_switched_off(mode: str) -> None:
    result = render(None, mode, True, ("metrics.prometheus.scrapeAnnotations=false",))

    for pod in scraped_pods(result, mode):
        assert "prometheus.io/scrape" not in pod["metadata"].get("annotations", {})


@pytest.mark.parametrize("mode", MODES)
def test_no_scraper_gets_in_unless_values_name_it(mode: str) -> None:
    default = render(None, mode, True)
    opened = render(None, mode, True, (MONITORING_SET,))

    for component, port in (("worker", WORKER_PORT), ("gateway", GATEWAY_PORT)):
        closed_rules = policy(default, component)["spec"]["ingress"]
        assert all(MONITORING not in rule["from"] for rule in closed_rules)
        rules = policy(opened, component)["spec"]["ingress"]
        scrape = [rule for rule in rules if MONITORING in rule["from"]]
        assert scrape == [{"from": [MONITORING], "ports": [{"port": port, "protocol": "TCP"}]}]
        assert rules[: len(closed_rules)] == closed_rules  # nothing else changed


def test_statsd_is_off_by_default() -> None:
    for deployment in render(None, "knative", True).of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "AIRFLOW__METRICS__STATSD_ON" not in env_of(container)


def test_statsd_settings_reach_the_scheduler_and_not_the_workers() -> None:
    result = render(
        None,
        "deployment",
        True,
        ("metrics.statsd.enabled=true", "metrics.statsd.host=statsd.monitoring", "metrics.statsd.port=8125"),
    )

    (scheduler,) = result.component("Deployment", "scheduler")
    env = env_of(scheduler["spec"]["template"]["spec"]["containers"][0])
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd.monitoring"
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == "8125"
    assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow"
    for worker in result.component("Deployment", "worker"):
        assert "AIRFLOW__METRICS__STATSD_ON" not in env_of(
            worker["spec"]["template"]["spec"]["containers"][0]
        )


def test_statsd_without_a_host_is_refused() -> None:
    with pytest.raises(HelmError, match=r"metrics\.statsd\.host is required when metrics\.statsd\.enabled"):
        render(None, "knative", True, ("metrics.statsd.enabled=true",))
