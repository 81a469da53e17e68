"""The local activator with real workers: bounded starts, and a task's start before pre-warm starts."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_knative.protocol import PREWARM_DISTANCE_HEADER, READINESS_PATH
from tests.conftest import free_port


@pytest.fixture
def activator(tmp_path: Path) -> Iterator[str]:
    """``python -m airflow_knative.local.activator`` allowed one worker start at a time."""
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        # the workers only start here; no task runs, so nothing listens at this URL
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:9/execution/",
    }
    command = [
        sys.executable,
        "-m",
        "airflow_knative.local.activator",
        "--port",
        str(port),
        "--secret-file",
        str(secret),
        "--log-dir",
        str(tmp_path),
        "--idle-timeout",
        "600",
        "--max-starting",
        "1",
    ]
    log = (tmp_path / "activator.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"activator did not start: {(tmp_path / 'activator.log').read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def _requests(url: str) -> list[int]:
    """Pre-warm three services (the later a nearer one), then make a task's request to a fourth."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def prewarm(service: str, distance: int) -> httpx.Response:
            headers = {PREWARM_DISTANCE_HEADER: str(distance)}
            return await client.get(f"/services/{service}{READINESS_PATH}", headers=headers)

        requests = [asyncio.create_task(prewarm("svc-a", 1))]
        await asyncio.sleep(0.5)
        requests.append(asyncio.create_task(prewarm("svc-b", 3)))
        await asyncio.sleep(0.2)
        requests.append(asyncio.create_task(prewarm("svc-d", 1)))
        await asyncio.sleep(0.3)
        requests.append(asyncio.create_task(client.get("/services/svc-c/healthz")))
        answers = await asyncio.gather(*requests)
        return [a.status_code for a in answers]


def test_one_start_at_a_time_task_requests_first_then_the_nearest_prewarms(activator: str) -> None:
    assert asyncio.run(_requests(activator)) == [200, 200, 200, 200]

    status = httpx.get(activator + "/activator/status", timeout=10).json()
    starts = sorted(status["cold_starts"], key=lambda s: s["started_at"])
    # svc-a started at once; svc-c (a task waits) overtook the queued pre-warms, and svc-d
    # (a direct downstream) overtook svc-b (three tasks down) although it came later
    assert [s["service"] for s in starts] == ["svc-a", "svc-c", "svc-d", "svc-b"]
    assert [s["woken_by"] for s in starts] == ["GET /readyz", "GET /healthz", "GET /readyz", "GET /readyz"]
    for earlier, later in itertools.pairwise(starts):
        assert later["started_at"] >= earlier["started_at"] + earlier["start_s"], starts  # never two at once
    assert starts[3]["queued_s"] > starts[2]["queued_s"] > starts[1]["queued_s"] > 0
    assert status["max_starting"] == 1 and status["waiting_to_start"] == [] and status["starting"] == 0
