"""More DAGs and task instances than one page of Airflow's REST API holds ([api] maximum_page_limit = 100).

A real local stack (API server, DAG processor, scheduler, gateway; LocalExecutor,
since no task runs here) over 106 DAGs: ``LocalStack.start()`` must see every DAG
(it waits for them, as ``make run`` does), and a run of a DAG with 120 tasks must
list all its task instances. The DAGs share two files: paging depends on how many
DAGs the API holds, and one parse per file keeps the DAG processor's work small on
a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_knative.airflow_rest import PAGE_SIZE, AirflowClient, AirflowTokenAuth, Pages, api_path
from airflow_knative.gateway.airflow_api import AirflowApi as GatewayAirflowApi
from airflow_knative.gateway.auth import BasicCredentials, TokenCache
from airflow_knative.local.stack import LocalStack
from tests.e2e.conftest import AUTH, stack_config

pytestmark = pytest.mark.e2e

SMALL_DAGS = PAGE_SIZE + 5
WIDE_TASKS = PAGE_SIZE + 20

SMALL_DAGS_FILE = f"""
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

for index in range({SMALL_DAGS}):
    with DAG(dag_id=f"paging_{{index:03d}}", schedule=None, catchup=False) as dag:
        EmptyOperator(task_id="only")
    globals()[dag.dag_id] = dag
"""

WIDE_DAG = f"""
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="paging_wide", schedule=None, catchup=False):
    for index in range({WIDE_TASKS}):
        EmptyOperator(task_id=f"task_{{index:03d}}")
"""


@pytest.fixture(scope="module")
def many_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many-dags")
    (folder / "paging_small.py").write_text(SMALL_DAGS_FILE)
    (folder / "paging_wide.py").write_text(WIDE_DAG)
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, many_dags: Path) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("many-dags-stack")
    config = stack_config(home, many_dags, executor="local", workers=0, worker_concurrency=1, parallelism=2)
    local = LocalStack(config)
    local.start()  # returns only once the API lists every DAG of the folder
    try:
        yield local
    finally:
        local.stop()


def test_the_stack_starts_and_the_api_lists_every_dag(stack: LocalStack) -> None:
    with AirflowClient(stack.config.api_url, *AUTH) as api:
        assert api.dag_ids() == set(stack.dag_ids)
    assert len(stack.dag_ids) == SMALL_DAGS + 1 > PAGE_SIZE


def test_every_task_instance_of_a_wide_run_is_listed(stack: LocalStack) -> None:
    """The DAG stays paused (Airflow's default), so the run's task instances exist and nothing runs."""
    with AirflowClient(stack.config.api_url, *AUTH) as api:
        run_id = api.trigger("paging_wide")  # manual__<date>+00:00: ':' and '+' in the URL, quoted
        instances = api.task_instances("paging_wide", run_id)

        assert sorted(ti["task_id"] for ti in instances) == [f"task_{i:03d}" for i in range(WIDE_TASKS)]
        assert api.dag_run("paging_wide", run_id)["dag_run_id"] == run_id


async def test_the_gateway_client_lists_every_task_instance_of_a_wide_run(stack: LocalStack) -> None:
    """The gateway's async client pages like the sync one: it reads which tasks of a run failed."""
    with AirflowClient(stack.config.api_url, *AUTH) as api:
        run_id = api.trigger("paging_wide")
    async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=30.0) as http:
        session = GatewayAirflowApi(http=http, tokens=TokenCache(60)).as_user(BasicCredentials(*AUTH))
        instances = await session.list_task_instances("paging_wide", run_id)

    assert sorted(ti.task_id for ti in instances) == [f"task_{i:03d}" for i in range(WIDE_TASKS)]


async def test_the_shared_token_auth_reads_every_dag_with_an_async_client(stack: LocalStack) -> None:
    auth = AirflowTokenAuth.for_server(stack.config.api_url, *AUTH)
    async with httpx.AsyncClient(base_url=stack.config.api_url, auth=auth, timeout=30.0) as http:
        pages = Pages("dags")
        while not pages.add(
            (await http.get(api_path("dags"), params=pages.params())).raise_for_status().json()
        ):
            pass

    assert {dag["dag_id"] for dag in pages.items} == set(stack.dag_ids)
