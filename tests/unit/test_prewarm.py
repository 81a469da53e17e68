"""Pre-warm along the DAG: which services a dispatch wakes, how, and how far down each is.

A stdlib HTTP server on 127.0.0.1 stands in for the services (a readiness GET is all a
pre-warm sends); the DAG shape is handed in instead of read from the metadata database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from airflow_knative.executor.prewarm import DagShape, Prewarmer, TaskShape, tasks_below
from airflow_knative.protocol import PREWARM_DISTANCE_HEADER, READINESS_PATH
from airflow_knative.routing import Router, RoutingTable, ServiceEntry, write_routing_table

DAG = "shape"
#: start -> a -> b -> end, and start -> c -> end
SHAPE: DagShape = {
    "start": TaskShape(frozenset({"a", "c"}), None),
    "a": TaskShape(frozenset({"b"}), None),
    "b": TaskShape(frozenset({"end"}), None),
    "c": TaskShape(frozenset({"end"}), None),
    "end": TaskShape(frozenset(), None),
}


def test_tasks_below_are_nearest_first_each_once_with_their_distance() -> None:
    assert tasks_below(SHAPE, "start") == [("a", 1), ("c", 1), ("b", 2), ("end", 2)]
    assert tasks_below(SHAPE, "b") == [("end", 1)]
    assert tasks_below(SHAPE, "end") == []


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get(PREWARM_DISTANCE_HEADER)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def services() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_dispatch_wakes_each_downstream_service_once_with_its_distance(
    services: str, tmp_path: Path
) -> None:
    tasks = {task: f"svc-{task}" for task in SHAPE}
    table = RoutingTable(
        services={svc: ServiceEntry(url=f"{services}/{svc}") for svc in tasks.values()}, tasks={DAG: tasks}
    )
    write_routing_table(table, tmp_path / "routing.yaml")
    prewarmer = Prewarmer(Router(tmp_path / "routing.yaml"), 3, 10.0, shape_loader=lambda _version: SHAPE)
    prewarmer.start()
    try:
        for task_id in ("start", "start"):  # the second is within rewake_after: nothing sent again
            prewarmer.task_dispatched(
                SimpleNamespace(ti=SimpleNamespace(dag_id=DAG, dag_version_id="v1", task_id=task_id))
            )  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while len(_Recorder.seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # room for a wrong extra request to arrive
    finally:
        prewarmer.stop()

    # at most 3 services (max_services), nearest first: "end" is not woken; no task is ever sent
    assert sorted(_Recorder.seen) == [
        ("GET", f"/svc-a{READINESS_PATH}", "1"),
        ("GET", f"/svc-b{READINESS_PATH}", "2"),
        ("GET", f"/svc-c{READINESS_PATH}", "1"),
    ]
