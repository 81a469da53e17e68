"""Output assembly from leaf tasks, value decoding and the failed-run task list."""

from __future__ import annotations

from typing import Any

from airflow_knative.gateway.airflow_api import TaskInfo, TaskInstanceInfo, XComValue
from airflow_knative.gateway.output import (
    assemble_output,
    decode_value,
    failed_tasks,
    leaf_tasks,
    log_error_summary,
    mapped_indexes,
    xcom_output,
)


def tuple_envelope(items: list[Any]) -> dict[str, Any]:
    return {"__classname__": "builtins.tuple", "__version__": 1, "__data__": items}


def test_leaves_are_tasks_without_downstream() -> None:
    tasks = [
        TaskInfo("extract", ("compute_sum", "compute_count")),
        TaskInfo("compute_sum", ("do_avg",)),
        TaskInfo("compute_count", ("do_avg",)),
        TaskInfo("do_avg"),
    ]
    assert [task.task_id for task in leaf_tasks(tasks)] == ["do_avg"]


def test_several_leaves_keep_the_dag_order() -> None:
    tasks = [TaskInfo("extract", ("a", "b")), TaskInfo("b"), TaskInfo("a")]
    assert [task.task_id for task in leaf_tasks(tasks)] == ["b", "a"]


def test_one_leaf_gives_its_value() -> None:
    assert assemble_output([TaskInfo("do_avg")], {"do_avg": 2.5}) == 2.5


def test_several_leaves_give_a_dict_by_task_id() -> None:
    leaves = [TaskInfo("a"), TaskInfo("b")]
    assert assemble_output(leaves, {"a": 1, "b": [2]}) == {"a": 1, "b": [2]}


def test_a_leaf_without_value_is_null() -> None:
    assert assemble_output([TaskInfo("a"), TaskInfo("b")], {"a": 1}) == {"a": 1, "b": None}


def test_tuples_and_sets_become_arrays_even_nested() -> None:
    assert decode_value(tuple_envelope([1, tuple_envelope([2, 3])])) == [1, [2, 3]]
    assert decode_value({"k": {"__classname__": "builtins.set", "__version__": 1, "__data__": [4]}}) == {
        "k": [4]
    }
    assert decode_value([tuple_envelope(["x"])]) == [["x"]]


def test_plain_json_and_other_envelopes_are_kept() -> None:
    when = {"__classname__": "datetime.datetime", "__version__": 2, "__data__": {"timestamp": 1.0}}
    assert decode_value(when) == when
    assert decode_value({"a": [1, "b", None, True]}) == {"a": [1, "b", None, True]}


def test_missing_xcom_is_null() -> None:
    assert xcom_output(XComValue(found=False)) is None
    assert xcom_output(XComValue(found=True, value=tuple_envelope([1]))) == [1]


def test_mapped_indexes_are_sorted_and_skip_the_placeholder() -> None:
    instances = [TaskInstanceInfo("t", i, "success") for i in (2, 0, 10, 1)]
    assert mapped_indexes([*instances, TaskInstanceInfo("t", -1, "removed")]) == [0, 1, 2, 10]


def test_empty_expansion_has_no_indexes() -> None:
    assert mapped_indexes([TaskInstanceInfo("t", -1, "skipped")]) == []


def test_failed_tasks_lists_failed_then_upstream_failed() -> None:
    instances = [
        TaskInstanceInfo("load", -1, "upstream_failed"),
        TaskInstanceInfo("extract", -1, "success"),
        TaskInstanceInfo("boom", 3, "failed"),
        TaskInstanceInfo("boom", 1, "failed"),
        TaskInstanceInfo("other", -1, None),
    ]
    assert failed_tasks(instances) == [
        {"task_id": "boom", "map_index": 1, "state": "failed"},
        {"task_id": "boom", "map_index": 3, "state": "failed"},
        {"task_id": "load", "map_index": -1, "state": "upstream_failed"},
    ]


def test_failed_tasks_carry_their_details() -> None:
    instances = [TaskInstanceInfo("boom", -1, "failed", 1), TaskInstanceInfo("after", -1, "upstream_failed")]
    details = {("boom", -1): {"error": "ValueError: no", "log_path": "/api/v2/x"}}
    assert failed_tasks(instances, details) == [
        {
            "task_id": "boom",
            "map_index": -1,
            "state": "failed",
            "error": "ValueError: no",
            "log_path": "/api/v2/x",
        },
        {"task_id": "after", "map_index": -1, "state": "upstream_failed"},
    ]


def test_log_error_summary_is_the_last_exception_of_the_attempt() -> None:
    content = [
        {"event": "::group::Pre Execute", "level": "info"},
        {
            "event": "retrying",
            "level": "warning",
            "error_detail": [{"exc_type": "OSError", "exc_value": "early"}],
        },
        {
            "event": "Task failed with exception",
            "level": "error",
            "error_detail": [
                {"exc_type": "ValueError", "exc_value": "refusing to process [1, 2]", "frames": []},
                {"exc_type": "KeyError", "exc_value": "'cause'", "frames": []},
            ],
        },
        "a plain text line",
    ]
    assert log_error_summary(content) == "ValueError: refusing to process [1, 2]"


def test_log_error_summary_falls_back_to_the_last_error_line() -> None:
    content = [
        {"event": "starting", "level": "info"},
        {"event": "no route for dag_id='d' task_id='t'", "level": "error"},
        {"event": "done", "level": "info"},
    ]
    assert log_error_summary(content) == "no route for dag_id='d' task_id='t'"
    assert log_error_summary([{"event": "fine", "level": "info"}, "text"]) is None
