"""The routing table: which service serves a task, and where it listens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from airflow_knative.routing import (
    Router,
    RoutingError,
    RoutingFileError,
    RoutingTable,
    ServiceEntry,
    load_routing_table,
    write_routing_table,
)
from airflow_knative.task_config import InvalidTaskConfigError

DAG = "compute_avg_distributed"
EXTRACT_SVC = "compute-avg-distributed-extract-abcd1234"
SHARED_SVC = "shared-etl"


def table() -> RoutingTable:
    return RoutingTable(
        services={
            EXTRACT_SVC: ServiceEntry(url=f"http://{EXTRACT_SVC}.airflow.svc.cluster.local"),
            SHARED_SVC: ServiceEntry(url="http://shared-etl.airflow.svc.cluster.local"),
        },
        tasks={DAG: {"extract": EXTRACT_SVC, "group.load": SHARED_SVC}},
    )


@pytest.fixture
def routing_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing" / "routing.yaml"
    write_routing_table(table(), path)
    return path


def test_router_resolves_tasks_through_the_tasks_table(routing_file: Path) -> None:
    router = Router(routing_file)

    assert router.service_for(DAG, "extract", None) == EXTRACT_SVC
    assert router.url_for(DAG, "extract", None) == f"http://{EXTRACT_SVC}.airflow.svc.cluster.local"
    assert router.url_for(DAG, "group.load", {}) == "http://shared-etl.airflow.svc.cluster.local"


@pytest.mark.parametrize(("dag_id", "task_id"), [(DAG, "unknown_task"), ("unknown_dag", "extract")])
def test_missing_route_names_the_task_and_the_routing_file(
    routing_file: Path, dag_id: str, task_id: str
) -> None:
    router = Router(routing_file)

    with pytest.raises(RoutingError) as caught:
        router.url_for(dag_id, task_id, None)

    message = str(caught.value)
    assert repr(dag_id) in message
    assert repr(task_id) in message
    assert str(routing_file) in message
    assert "executor_config" in message  # says how to route it by hand


def test_executor_config_service_overrides_the_tasks_table(routing_file: Path) -> None:
    router = Router(routing_file)
    config = {"knative": {"service": SHARED_SVC}}

    assert router.service_for(DAG, "extract", config) == SHARED_SVC
    assert router.url_for(DAG, "extract", config) == "http://shared-etl.airflow.svc.cluster.local"
    # a task missing from the tasks table is routable through its override alone
    assert router.url_for(DAG, "not_generated_yet", config) == "http://shared-etl.airflow.svc.cluster.local"


def test_executor_config_without_service_falls_back_to_the_table(routing_file: Path) -> None:
    router = Router(routing_file)

    assert router.service_for(DAG, "extract", {"knative": {"min_scale": 1}}) == EXTRACT_SVC
    assert router.service_for(DAG, "extract", {"other_executor": {"x": 1}}) == EXTRACT_SVC


def test_override_to_a_service_not_listed_names_the_service_and_the_file(routing_file: Path) -> None:
    router = Router(routing_file)

    with pytest.raises(RoutingError) as caught:
        router.url_for(DAG, "extract", {"knative": {"service": "no-such-service"}})

    message = str(caught.value)
    assert "'no-such-service'" in message
    assert str(routing_file) in message
    assert "'extract'" in message


def test_task_routed_to_a_service_not_listed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write_routing_table(RoutingTable(tasks={DAG: {"extract": "ghost-svc"}}), path)

    with pytest.raises(RoutingError, match="'ghost-svc'"):
        Router(path).url_for(DAG, "extract", None)


@pytest.mark.parametrize(
    ("executor_config", "fragment"),
    [
        ({"knative": {"service": "Not_A_Dns_Label"}}, "Not_A_Dns_Label"),
        ({"knative": {"servce": "typo"}}, "servce"),
        ({"knative": "shared-etl"}, "must be a dict"),
        ({"knative": {"min_scale": -1}}, "min_scale"),
    ],
)
def test_invalid_executor_config_is_an_invalid_task_config_error(
    routing_file: Path, executor_config: dict[str, object], fragment: str
) -> None:
    router = Router(routing_file)

    with pytest.raises(InvalidTaskConfigError) as caught:
        router.url_for(DAG, "extract", executor_config)

    message = str(caught.value)
    assert f"{DAG}.extract" in message
    assert fragment in message


def test_router_sees_a_rewritten_routing_file(routing_file: Path) -> None:
    router = Router(routing_file)
    assert router.url_for(DAG, "extract", None).startswith(f"http://{EXTRACT_SVC}")
    with pytest.raises(RoutingError):
        router.url_for(DAG, "added_later", None)

    updated = table()
    updated.services["added-svc"] = ServiceEntry(url="http://added-svc.airflow")
    updated.services[EXTRACT_SVC] = ServiceEntry(url="http://moved.airflow")
    updated.tasks[DAG]["added_later"] = "added-svc"
    write_routing_table(updated, routing_file)
    before = routing_file.stat().st_mtime_ns
    os.utime(routing_file, ns=(before + 10**9, before + 10**9))  # a coarse clock must not hide it

    assert router.url_for(DAG, "added_later", None) == "http://added-svc.airflow"
    assert router.url_for(DAG, "extract", None) == "http://moved.airflow"


def test_router_reloads_only_when_the_file_changes(routing_file: Path) -> None:
    router = Router(routing_file)
    first = router.table()

    assert router.table() is first


def test_router_on_a_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "routing.yaml"

    with pytest.raises(RoutingFileError) as caught:
        Router(missing).url_for(DAG, "extract", None)

    assert str(missing) in str(caught.value)
    assert "routing_file" in str(caught.value)


def test_router_keeps_the_last_good_table_when_the_file_is_removed(
    routing_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router(routing_file)
    url = router.url_for(DAG, "extract", None)
    routing_file.unlink()

    assert router.url_for(DAG, "extract", None) == url
    assert str(routing_file) in caplog.text
    assert "last good table" in caplog.text


@pytest.mark.parametrize("text", ["services: [unclosed", "servics: {}\n", "- a\n"])
def test_router_keeps_the_last_good_table_when_the_file_turns_invalid(
    routing_file: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    router = Router(routing_file)
    url = router.url_for(DAG, "extract", None)
    routing_file.write_text(text)
    bump_mtime(routing_file)

    assert router.url_for(DAG, "extract", None) == url
    assert router.url_for(DAG, "extract", None) == url
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, "one error per change, not one per task"
    assert str(routing_file) in errors[0].getMessage()


def test_router_takes_a_fixed_file_after_an_invalid_one(routing_file: Path) -> None:
    router = Router(routing_file)
    router.table()
    good = routing_file.read_text()
    routing_file.write_text("services: [unclosed")
    bump_mtime(routing_file)
    router.table()

    updated = table()
    updated.services[EXTRACT_SVC] = ServiceEntry(url="http://fixed.airflow")
    write_routing_table(updated, routing_file)
    bump_mtime(routing_file, 2)

    assert good != routing_file.read_text()
    assert router.url_for(DAG, "extract", None) == "http://fixed.airflow"


def test_router_changed_tells_whether_a_reload_is_due(routing_file: Path) -> None:
    router = Router(routing_file)
    router.refresh()
    assert not router.changed()
    bump_mtime(routing_file)
    assert router.changed()
    router.refresh()
    assert not router.changed()


def bump_mtime(path: Path, seconds: int = 1) -> None:
    """Move the modification time forward: a coarse file system clock must not hide a rewrite."""
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before + seconds * 10**9, before + seconds * 10**9))


@pytest.mark.parametrize(
    "text",
    [
        "services: [unclosed",  # not YAML at all
        "services:\n  svc: {url: 1, port: 80}\n",  # unknown key
        "tasks:\n  dag: [a, b]\n",  # wrong shape
        "- a\n- b\n",  # a list, not a mapping
        "servics: {}\n",  # misspelt top-level key
    ],
)
def test_malformed_routing_file_names_the_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)

    with pytest.raises(RoutingFileError) as caught:
        load_routing_table(path)

    assert str(path) in str(caught.value)


def test_empty_routing_file_is_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("")

    assert load_routing_table(path) == RoutingTable()


def test_json_routing_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(table().to_document()))

    assert load_routing_table(path) == table()


def test_write_routing_table_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "routing.yaml"

    write_routing_table(table(), path)

    assert load_routing_table(path) == table()
    assert yaml.safe_load(path.read_text()) == table().to_document()
    assert [p.name for p in path.parent.iterdir()] == ["routing.yaml"]  # no temporary file left


def test_write_routing_table_replaces_an_existing_file(routing_file: Path) -> None:
    smaller = RoutingTable(services={"only": ServiceEntry(url="http://only")}, tasks={"d": {"t": "only"}})

    write_routing_table(smaller, routing_file)

    assert load_routing_table(routing_file) == smaller
