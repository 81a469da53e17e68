"""Pay the first-request costs at start-up, so the first workflow call is as fast as later ones.

Measured on the local stack (API server and worker logs of a fresh start): the
first task spent about 14-20 s in its ``PATCH /execution/task-instances/{id}/run``
call, and every other request to the API server stalled meanwhile. The Airflow API
server builds its Execution API (mounted at ``/execution``; Cadwyn generates the
versioned routes) on the first request that reaches it, inside the single API
server process's event loop. Everything else the first task touches was already
warm: workers pre-fork their pool before they report ready, and the first task on
each worker parsed its DAG file as fast as later ones.

So the stack sends that first request itself, with the Execution API version the
task SDK speaks, before it reports "up". The same logs showed the first trigger of
a DAG taking about five times as long as later ones (the API server loads the
DAG's definition once); the stack reads each DAG's tasks once for that reason
(``LocalStack._wait_for_dags``). What stays on the first call is each DAG's first
unpause by the gateway and the scheduler's first run of it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from airflow_knative.local.config import StackConfig

#: The Execution API's unauthenticated health route; any route builds the app.
EXECUTION_HEALTH_PATH = "/execution/health"
VERSION_HEADER = "Airflow-API-Version"


def execution_api_version() -> str:
    """The Execution API version the installed task SDK sends with every task's calls."""
    from airflow.sdk.api.datamodels._generated import API_VERSION

    return str(API_VERSION)


def warm_execution_api(config: StackConfig, api_server_workers: int, timeout: float) -> dict[str, object]:
    """Send the first Execution API request(s); return what was done, for the stack's event log.

    Each API server worker process builds its own copy, and the kernel picks the
    process that takes a connection, so as many requests go out at once as there
    are processes (twice over, as a process busy building does not accept).
    """
    version = execution_api_version()
    url = f"{config.api_url}{EXECUTION_HEALTH_PATH}"
    requests = 2 * api_server_workers if api_server_workers > 1 else 1

    def probe(_: int) -> int:
        response = httpx.get(url, headers={VERSION_HEADER: version}, timeout=timeout)
        response.raise_for_status()
        return response.status_code

    with ThreadPoolExecutor(requests) as pool:
        list(pool.map(probe, range(requests)))
    return {
        "warmed": "execution_api",
        "path": EXECUTION_HEALTH_PATH,
        "version": version,
        "requests": requests,
    }
