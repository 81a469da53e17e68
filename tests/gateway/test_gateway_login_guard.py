"""Failed logins stay cheap: negative cache, failure limits per client and user, login slots.

The Airflow side is an ``httpx.MockTransport`` that counts password checks; the
real gateway against a real Airflow is in tests/faults/test_worker_faults.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from airflow_knative.gateway.airflow_api import AirflowApi, CredentialsRejected, LoginsThrottled
from airflow_knative.gateway.auth import BasicCredentials, TokenCache
from airflow_knative.gateway.errors import from_airflow
from airflow_knative.gateway.login_guard import LoginGuard

DAG = {"dag_id": "d", "is_paused": False}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Airflow:
    """Counts password checks; admin/admin is the only valid login."""

    def __init__(self, login_delay: float = 0.0) -> None:
        self.password_checks = 0
        self.login_delay = login_delay
        self.logins_in_flight = 0
        self.most_logins_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/auth/token":
            return httpx.Response(200, json=DAG)
        self.password_checks += 1
        self.logins_in_flight += 1
        self.most_logins_in_flight = max(self.most_logins_in_flight, self.logins_in_flight)
        try:
            await asyncio.sleep(self.login_delay)
        finally:
            self.logins_in_flight -= 1
        body = json.loads(request.content)
        if (body["username"], body["password"]) != ("admin", "admin"):
            return httpx.Response(401, json={"detail": "Invalid credentials"})
        return httpx.Response(201, json={"access_token": f"token-{self.password_checks}"})


def make_api(airflow: Airflow, guard: LoginGuard, max_concurrent_logins: int = 5) -> AirflowApi:
    http = httpx.AsyncClient(base_url="http://airflow.test", transport=httpx.MockTransport(airflow))
    return AirflowApi(
        http=http, tokens=TokenCache(300), guard=guard, max_concurrent_logins=max_concurrent_logins
    )


def caller(user: str, password: str, client: str = "10.0.0.1") -> BasicCredentials:
    return BasicCredentials(user, password, client=client)


async def test_the_same_wrong_password_costs_airflow_one_check() -> None:
    airflow, clock = Airflow(), FakeClock()
    api = make_api(airflow, LoginGuard(clock=clock, rejected_ttl=60, max_failures_per_client=1000))

    for _ in range(20):
        with pytest.raises(CredentialsRejected):
            await api.as_user(caller("admin", "guess")).get_dag("d")

    assert airflow.password_checks == 1
    clock.now += 61  # the rejection is remembered for a limited time only
    with pytest.raises(CredentialsRejected):
        await api.as_user(caller("admin", "guess")).get_dag("d")
    assert airflow.password_checks == 2


async def test_a_guessing_client_is_throttled_while_others_still_log_in() -> None:
    airflow, clock = Airflow(), FakeClock()
    api = make_api(airflow, LoginGuard(clock=clock, window=60, max_failures_per_client=5))

    for attempt in range(5):
        with pytest.raises(CredentialsRejected):
            await api.as_user(caller("admin", f"guess-{attempt}", client="6.6.6.6")).get_dag("d")
    with pytest.raises(LoginsThrottled) as throttled:
        await api.as_user(caller("admin", "guess-5", client="6.6.6.6")).get_dag("d")

    assert airflow.password_checks == 5
    assert 0 < throttled.value.retry_after <= 60
    answer = from_airflow(throttled.value)
    assert answer.status == 429 and int(answer.headers["Retry-After"]) > 0
    # a valid caller from elsewhere is not affected
    assert (await api.as_user(caller("admin", "admin", client="10.0.0.2")).get_dag("d")).dag_id == "d"
    clock.now += 61  # the window passes: the client may try again
    with pytest.raises(CredentialsRejected):
        await api.as_user(caller("admin", "guess-6", client="6.6.6.6")).get_dag("d")


async def test_guesses_for_one_user_from_many_addresses_are_limited_per_user() -> None:
    airflow, clock = Airflow(), FakeClock()
    api = make_api(airflow, LoginGuard(clock=clock, max_failures_per_client=100, max_failures_per_user=10))

    for attempt in range(10):
        with pytest.raises(CredentialsRejected):
            await api.as_user(caller("victim", f"g{attempt}", client=f"10.1.0.{attempt}")).get_dag("d")
    with pytest.raises(LoginsThrottled):
        await api.as_user(caller("victim", "g10", client="10.1.0.99")).get_dag("d")

    assert airflow.password_checks == 10


async def test_a_cached_token_is_never_throttled() -> None:
    """Callers already logged in keep working during an attack on their user name."""
    airflow, clock = Airflow(), FakeClock()
    api = make_api(airflow, LoginGuard(clock=clock, max_failures_per_user=3))
    admin = api.as_user(caller("admin", "admin"))
    await admin.get_dag("d")

    for attempt in range(3):
        with pytest.raises(CredentialsRejected):
            await api.as_user(caller("admin", f"g{attempt}", client="6.6.6.6")).get_dag("d")

    assert (await admin.get_dag("d")).dag_id == "d"


async def test_logins_never_take_more_than_their_share_of_airflow_connections() -> None:
    airflow = Airflow(login_delay=0.05)
    api = make_api(airflow, LoginGuard(max_failures_per_client=1000, max_failures_per_user=1000), 2)

    async def guess(n: int) -> None:
        with pytest.raises(CredentialsRejected):
            await api.as_user(caller(f"user-{n}", "wrong")).get_dag("d")

    await asyncio.gather(*(guess(n) for n in range(12)))

    assert airflow.password_checks == 12
    assert airflow.most_logins_in_flight == 2


def test_guard_tables_stay_bounded() -> None:
    clock = FakeClock()
    guard = LoginGuard(clock=clock, max_tracked=50)

    for n in range(500):
        guard.failed(BasicCredentials(f"user-{n}", "x"), client=f"10.0.{n // 250}.{n % 250}")

    assert len(guard._rejected) <= 50 and len(guard._by_client) <= 50 and len(guard._by_user) <= 50
