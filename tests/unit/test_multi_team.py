"""Multi-team: Airflow's ExecutorLoader gives each team a KnativeExecutor that reads its own options.

Airflow 3.3 resolves a team's option from ``AIRFLOW__<TEAM>___<SECTION>__<KEY>`` or
from the config section ``[<team>=<section>]``, never from another team's. The
executors, Airflow's config parser and loader are real; the workers are the
scripted HTTP stubs of ``stub_worker`` (one per team), so what each team's
executor sent, and with which secret, can be read back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.configuration import conf
from airflow.executors import executor_loader
from airflow.executors.executor_loader import ExecutorLoader
from airflow.utils.state import TaskInstanceState

from airflow_knative.executor import KnativeExecutor
from airflow_knative.routing import RoutingTable, ServiceEntry, write_routing_table
from airflow_knative.settings import SECTION, ExecutorSettings, SettingsError, load_settings, option_specs
from bench.workloads import DAG_ID, WorkloadFactory
from tests.unit.stub_worker import StubWorker, finished, run

EXECUTOR = "airflow_knative.executor.KnativeExecutor"
TEAMS = ("team_a", "team_b")


def _reset_executor_loader() -> None:
    """Forget the executors Airflow's loader parsed from ``[core] executor`` (module-level caches)."""
    executor_loader._executor_names.clear()
    for cache in (
        executor_loader._alias_to_executors_per_team,
        executor_loader._module_to_executors_per_team,
        executor_loader._classname_to_executors_per_team,
        executor_loader._team_name_to_executors,
    ):
        cache.clear()


@pytest.fixture(autouse=True)
def multi_team_airflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``[core] multi_team`` on, one global and one KnativeExecutor per team; no option set yet."""
    for option in option_specs():
        for team in (None, *TEAMS):
            monkeypatch.delenv(option.env_var(team), raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", ";".join([EXECUTOR, *(f"{t}={EXECUTOR}" for t in TEAMS)]))
    _reset_executor_loader()
    yield
    _reset_executor_loader()


@pytest.fixture
def team_section() -> Iterator[str]:
    """The airflow.cfg section ``[team_b=knative_executor]``, removed again after the test."""
    section = f"team_b={SECTION}"
    conf.add_section(section)
    yield section
    conf.remove_section(section)


@dataclasses.dataclass
class Team:
    """One team's worker stand-in and the files its options name."""

    name: str | None
    stub: StubWorker
    routing_file: Path
    secret_file: Path
    secret: str


def make_team(name: str | None, tmp_path: Path) -> Team:
    label = name or "global"
    stub = StubWorker(run(finished("success"))).start()
    routing_file = tmp_path / f"{label}-routing.yaml"
    write_routing_table(
        RoutingTable(services={"svc": ServiceEntry(url=stub.url)}, tasks={DAG_ID: {"extract": "svc"}}),
        routing_file,
    )
    secret = f"{label}-secret-0123456789abcdef"
    secret_file = tmp_path / f"{label}-secret"
    secret_file.write_text(secret)
    return Team(name, stub, routing_file, secret_file, secret)


@pytest.fixture
def teams(tmp_path: Path) -> Iterator[dict[str | None, Team]]:
    made = {name: make_team(name, tmp_path) for name in (None, *TEAMS)}
    yield made
    for team in made.values():
        team.stub.stop()


def load_executors() -> dict[str | None, KnativeExecutor]:
    """What the scheduler does: parse ``[core] executor`` and load one executor per entry."""
    names = ExecutorLoader.get_executor_names(validate_teams=False)  # teams live in the DB; none here
    loaded = {name.team_name: ExecutorLoader.load_executor(name) for name in names}
    assert all(isinstance(executor, KnativeExecutor) for executor in loaded.values())
    return loaded  # type: ignore[return-value]


def run_one_task(executor: KnativeExecutor, make_workload: WorkloadFactory) -> None:
    workload = make_workload("extract")
    executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while workload.ti.key not in executor.event_buffer and time.monotonic() < deadline:
        executor.heartbeat()
        time.sleep(0.02)
    assert executor.event_buffer.get(workload.ti.key) == (TaskInstanceState.SUCCESS, None)


def test_each_teams_executor_reads_its_own_routing_file_and_secret(
    teams: dict[str | None, Team],
    team_section: str,
    monkeypatch: pytest.MonkeyPatch,
    make_workload: WorkloadFactory,
) -> None:
    """Global section, team_a by environment, team_b by airflow.cfg section: three workers, three secrets."""
    global_team, team_a, team_b = teams[None], teams["team_a"], teams["team_b"]
    monkeypatch.setenv(f"AIRFLOW__{SECTION.upper()}__ROUTING_FILE", str(global_team.routing_file))
    monkeypatch.setenv(f"AIRFLOW__{SECTION.upper()}__SECRET_FILE", str(global_team.secret_file))
    monkeypatch.setenv(f"AIRFLOW__TEAM_A___{SECTION.upper()}__ROUTING_FILE", str(team_a.routing_file))
    monkeypatch.setenv(f"AIRFLOW__TEAM_A___{SECTION.upper()}__SECRET_FILE", str(team_a.secret_file))
    conf.set(team_section, "routing_file", str(team_b.routing_file))
    conf.set(team_section, "secret_file", str(team_b.secret_file))

    executors = load_executors()
    assert set(executors) == {None, "team_a", "team_b"}
    try:
        for executor in executors.values():
            executor.start()
        for executor in executors.values():
            run_one_task(executor, make_workload)
    finally:
        for executor in executors.values():
            executor.end()

    for team in teams.values():
        assert team.stub.posts == 1, f"{team.name or 'global'} worker got {team.stub.posts} requests"
        assert team.stub.received[0].headers["x-airflow-knative-secret"] == team.secret


def test_a_team_option_left_unset_takes_the_default_not_the_global_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"AIRFLOW__{SECTION.upper()}__DISPATCH_DEADLINE", "7")
    for option, value in (("routing_file", "r.yaml"), ("secret_file", "s"), ("accept_timeout", "11")):
        monkeypatch.setenv(f"AIRFLOW__TEAM_A___{SECTION.upper()}__{option.upper()}", value)

    team_a = load_settings(load_executors()["team_a"].conf)

    assert team_a.routing_file == "r.yaml"
    assert team_a.accept_timeout == 11.0
    assert team_a.dispatch_deadline == ExecutorSettings().dispatch_deadline


def test_a_team_without_its_routing_file_is_told_where_to_set_it(
    teams: dict[str | None, Team], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The global section's routing file does not count for a team: the error names the team's places."""
    monkeypatch.setenv(f"AIRFLOW__{SECTION.upper()}__ROUTING_FILE", str(teams[None].routing_file))
    monkeypatch.setenv(f"AIRFLOW__{SECTION.upper()}__SECRET_FILE", str(teams[None].secret_file))

    executor = load_executors()["team_a"]
    with pytest.raises(SettingsError) as caught:
        executor.start()

    assert f"[team_a={SECTION}] routing_file" in str(caught.value)
    assert f"AIRFLOW__TEAM_A___{SECTION.upper()}__ROUTING_FILE" in str(caught.value)
