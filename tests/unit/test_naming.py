"""The (dag_id, task_id) -> Knative service name rule shared by generator, chart and executor."""

from __future__ import annotations

import pytest

from airflow_knative.naming import (
    SERVICE_NAME_MAX_LENGTH,
    InvalidServiceNameError,
    is_dns_1035_label,
    service_name,
    validate_service_name,
)

IDS = [
    ("compute_avg_distributed", "extract"),
    ("etl", "group.task"),
    ("etl", "outer.inner.leaf_task"),
    ("My_DAG", "Extract_Data"),
    ("UPPER", "CASE"),
    ("123dag", "9task"),
    ("0", "1"),
    ("dag", "_private"),
    ("ünïcödé_dag", "tâche_été"),
    ("日本語", "タスク"),
    ("!!!", "@@@"),
    ("---", "..."),
    ("dag", "-"),
    ("a", "b"),
    ("x" * 300, "y" * 300),
    ("d" * 300, "t"),
    ("d", "t" * 300),
    ("9" * 300, "8" * 300),
    ("a." * 150, "b-" * 150),
    ("dag with spaces", "task\twith\nwhitespace"),
    ("dag", "t-" + "x" * 46),  # truncation lands right after a dash
]


@pytest.mark.parametrize(("dag_id", "task_id"), IDS)
def test_service_name_is_a_short_dns_label(dag_id: str, task_id: str) -> None:
    name = service_name(dag_id, task_id)

    assert is_dns_1035_label(name), name
    assert len(name) <= SERVICE_NAME_MAX_LENGTH


@pytest.mark.parametrize(("dag_id", "task_id"), IDS)
def test_service_name_passes_the_validator_users_names_go_through(dag_id: str, task_id: str) -> None:
    name = service_name(dag_id, task_id)

    assert validate_service_name(name, source="generated") == name


def test_revision_name_of_the_longest_service_is_still_a_dns_label() -> None:
    """Knative names revisions ``<service>-00001``, which must fit the 63-character label limit."""
    name = service_name("x" * 300, "y" * 300)

    assert len(f"{name}-00001") <= 63


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("compute_sum", "load"), ("compute-sum", "load")),
        (("dag", "compute_sum"), ("dag", "compute-sum")),
        (("dag", "a.b"), ("dag", "a_b")),
        (("dag", "Extract"), ("dag", "extract")),
        (("a-b", "c"), ("a", "b-c")),
        (("a_b", "c"), ("a", "b_c")),
        (("x" * 300, "task1"), ("x" * 300, "task2")),
        (("dag", "y" * 299 + "1"), ("dag", "y" * 299 + "2")),
        (("!!!", "@@@"), ("???", "###")),
    ],
)
def test_ids_that_sanitise_alike_get_different_names(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert service_name(*first) != service_name(*second)


@pytest.mark.parametrize(
    ("dag_id", "task_id", "expected"),
    [
        # Pinned: the chart and the running executor must agree across releases, so any
        # change of the rule must be deliberate (and comes with a migration note).
        ("compute_avg_distributed", "extract", "compute-avg-distributed-extract-eh5apnut"),
        ("etl", "group.task", "etl-group-task-tlbeaxyh"),
        ("123dag", "9task", "t-123dag-9task-fnyrwsgp"),
        ("!!!", "@@@", "task-2hl6vgd2"),
        ("x" * 300, "y" * 300, "x" * 48 + "-j4c2rsmu"),
    ],
)
def test_service_name_is_stable(dag_id: str, task_id: str, expected: str) -> None:
    assert service_name(dag_id, task_id) == expected


def test_service_name_is_deterministic() -> None:
    assert service_name("dag", "task") == service_name("dag", "task")


def test_service_name_keeps_the_ids_readable() -> None:
    name = service_name("Compute_Sum", "Load.Data")

    assert name.startswith("compute-sum-load-data-")


@pytest.mark.parametrize(("dag_id", "task_id"), [("", "task"), ("dag", ""), ("", "")])
def test_service_name_refuses_empty_ids(dag_id: str, task_id: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        service_name(dag_id, task_id)


@pytest.mark.parametrize(
    "name",
    ["a", "shared-etl", "svc1", "a" * SERVICE_NAME_MAX_LENGTH, "a-b-c-1-2-3"],
)
def test_validate_service_name_accepts_dns_labels(name: str) -> None:
    assert validate_service_name(name, source="values.yaml") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Shared",
        "1svc",
        "-svc",
        "svc-",
        "svc_name",
        "svc.name",
        "svc name",
        "sérvice",
        "a" * (SERVICE_NAME_MAX_LENGTH + 1),
    ],
)
def test_validate_service_name_rejects_with_the_source_named(name: str) -> None:
    source = 'executor_config["knative"]["service"] of etl.load'

    with pytest.raises(InvalidServiceNameError) as caught:
        validate_service_name(name, source=source)

    message = str(caught.value)
    assert message.startswith(source)
    assert repr(name) in message
    assert str(SERVICE_NAME_MAX_LENGTH) in message


def test_invalid_service_name_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"values\.yaml"):
        validate_service_name("Bad_Name", source="values.yaml")
