"""A small synchronous client of Airflow's REST API v2 for the local stack, its tests and benchmarks.

The gateway has its own async client (it serves many callers at once); this one
is for one caller that logs in once: waiting for DAGs at start-up, triggering,
waiting for and reading runs.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

TERMINAL_STATES = frozenset({"success", "failed"})

#: Items asked for per page. Airflow answers at most ``[api] maximum_page_limit`` (default 100)
#: items whatever ``limit`` says, so collections are read page by page until ``total_entries``.
PAGE_SIZE = 100


def api_path(*segments: str | int) -> str:
    """``/api/v2/<segment>/...`` with every segment quoted (run ids hold ``:`` and ``+``)."""
    return "/api/v2/" + "/".join(quote(str(segment), safe="") for segment in segments)


class AirflowApi:
    """A logged-in client of one Airflow API server."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30.0)
        token = self.client.post("/auth/token", json={"username": user, "password": password})
        token.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def collect(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of the paged collection at ``path`` (the list under ``key``), page by page."""
        items: list[dict[str, Any]] = []
        while True:
            response = self.client.get(
                path, params={**(params or {}), "limit": PAGE_SIZE, "offset": len(items)}
            )
            response.raise_for_status()
            body = response.json()
            page = list(body[key])
            items.extend(page)
            if not page or len(items) >= int(body["total_entries"]):
                return items

    def dag_ids(self) -> set[str]:
        """The DAGs Airflow has stored (the DAG processor parsed them), however many there are."""
        return {dag["dag_id"] for dag in self.collect(api_path("dags"), "dags")}

    def import_errors(self) -> dict[str, str]:
        """DAG files that do not import, as Airflow lists them: file name -> stack trace."""
        errors = self.collect(api_path("importErrors"), "import_errors")
        return {str(error["filename"]): str(error["stack_trace"]) for error in errors}

    def active_runs(self, dag_id: str) -> int:
        """How many runs of ``dag_id`` are queued or running."""
        response = self.client.get(
            api_path("dags", dag_id, "dagRuns"), params={"state": ["queued", "running"], "limit": 1}
        )
        response.raise_for_status()
        return int(response.json()["total_entries"])

    def _run_path(self, dag_id: str, run_id: str, *rest: str | int) -> str:
        return api_path("dags", dag_id, "dagRuns", run_id, *rest)

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id`` so its triggered runs start."""
        self.client.patch(api_path("dags", dag_id), json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run now; return its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        response = self.client.post(api_path("dags", dag_id, "dagRuns"), json=body)
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run as Airflow records it (state, start and end dates)."""
        response = self.client.get(self._run_path(dag_id, run_id))
        response.raise_for_status()
        return dict(response.json())

    def wait_terminal(self, dag_id: str, run_id: str, timeout: float, interval: float = 0.05) -> str:
        """Poll the run until success/failed (or ``timeout``); return the last state seen."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in TERMINAL_STATES:
                return state
            time.sleep(interval)
        return f"timeout({state})"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included."""
        return self.collect(self._run_path(dag_id, run_id, "taskInstances"), "task_instances")

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The ``return_value`` of one task instance."""
        response = self.client.get(
            self._run_path(dag_id, run_id, "taskInstances", task_id, "xcomEntries", "return_value"),
            params={"map_index": map_index, "deserialize": True},
        )
        response.raise_for_status()
        return response.json()["value"]

    def tasks(self, dag_id: str) -> dict[str, list[str]]:
        """task_id -> downstream task ids."""
        response = self.client.get(api_path("dags", dag_id, "tasks"))
        response.raise_for_status()
        return {t["task_id"]: list(t["downstream_task_ids"]) for t in response.json()["tasks"]}
