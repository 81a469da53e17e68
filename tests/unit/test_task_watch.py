"""Tasks the executor no longer streams, watched in bounded batches until Airflow records their end."""

from __future__ import annotations

from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_knative.executor.task_watch import TaskRow, TaskWatch, WatchedEnd


def key(task_id: str, try_number: int = 1) -> TaskInstanceKey:
    return TaskInstanceKey("dag", task_id, "run", try_number, -1)


class Database:
    """Stand-in for the task_instance table (no database in unit tests): ti_id -> row."""

    def __init__(self, rows: dict[str, TaskRow]) -> None:
        self.rows = rows
        self.reads: list[list[str]] = []

    def __call__(self, ids: list[str]) -> dict[str, TaskRow]:
        self.reads.append(ids)
        return {i: self.rows[i] for i in ids if i in self.rows}


def test_nothing_watched_reads_nothing() -> None:
    db = Database({})
    watch = TaskWatch(interval=0.0, load_rows=db)

    assert watch.check() == []
    assert db.reads == []


def test_reads_at_most_once_per_interval() -> None:
    db = Database({"a": TaskRow(1, "running")})
    watch = TaskWatch(interval=5.0, load_rows=db)
    watch.add(key("a"), "a")

    watch.check(now=100.0)
    watch.check(now=104.0)
    watch.check(now=105.0)

    assert len(db.reads) == 2


def test_reads_in_bounded_batches_and_gets_round_to_every_task() -> None:
    db = Database({name: TaskRow(1, "running") for name in "abcde"})
    watch = TaskWatch(interval=0.0, batch_size=2, load_rows=db)
    for name in "abcde":
        watch.add(key(name), name)

    for _ in range(3):
        watch.check()

    assert all(len(batch) <= 2 for batch in db.reads)
    assert {i for batch in db.reads for i in batch} == set("abcde")


def test_running_and_queued_tries_stay_watched() -> None:
    db = Database({"a": TaskRow(1, "running"), "b": TaskRow(1, "queued")})
    watch = TaskWatch(interval=0.0, load_rows=db)
    watch.add(key("a"), "a")
    watch.add(key("b"), "b")

    assert watch.check() == []
    assert len(watch) == 2


def test_ended_tries_are_returned_once_with_the_state_to_report() -> None:
    db = Database(
        {
            "ok": TaskRow(1, "success"),
            "retry": TaskRow(1, "up_for_retry"),
            "skipped": TaskRow(1, "skipped"),
            "again": TaskRow(2, "running"),  # cleared and running again: our try is over
        }
    )
    watch = TaskWatch(interval=0.0, load_rows=db)
    for name in ("ok", "retry", "skipped", "again", "reset"):
        watch.add(key(name), name)

    ended = watch.check()

    assert set(ended) == {
        WatchedEnd(key("ok"), "success"),
        WatchedEnd(key("retry"), "up_for_retry"),
        WatchedEnd(key("skipped"), None),
        WatchedEnd(key("again"), None),
        WatchedEnd(key("reset"), None),  # no row: reset to a new task instance id
    }
    assert len(watch) == 0
    assert watch.check() == []


def test_a_database_error_is_retried_at_the_next_check() -> None:
    calls = []

    def flaky(ids: list[str]) -> dict[str, TaskRow]:
        calls.append(ids)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return {"a": TaskRow(1, "success")}

    watch = TaskWatch(interval=0.0, load_rows=flaky)
    watch.add(key("a"), "a")

    assert watch.check() == []
    assert watch.check() == [WatchedEnd(key("a"), "success")]
