"""A stand-in for a pod-per-task executor: each workload runs in a fresh interpreter.

Speaks the worker protocol (``POST /v1/workloads`` -> ``accepted`` ... ``finished``) so
the KnativeExecutor can route a benchmark DAG to it, and runs each real workload
with ``python -m airflow.sdk.execution_time.execute_workload --json-string ...``,
as Airflow's container-based executors do. Benchmark use only, loopback only.

    python -m bench.fresh_worker --port 30123
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_knative.protocol import (
    LIVENESS_PATH,
    READINESS_PATH,
    STREAM_MEDIA_TYPE,
    WORKLOAD_PATH,
    AcceptedEvent,
    FinishedEvent,
    TaskTimings,
    encode_event,
)


def _log(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


async def _run_fresh(workload: dict[str, object], received_at: float) -> AsyncIterator[bytes]:
    yield encode_event(AcceptedEvent(worker="fresh-interpreter", received_at=received_at))
    spawned_at = time.time()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "airflow.sdk.execution_time.execute_workload",
        "--json-string",
        json.dumps(workload),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    exit_code = await process.wait()
    finished_at = time.time()
    ti = workload["ti"]
    assert isinstance(ti, dict)
    _log(
        {
            "event": "fresh_task_finished",
            "dag_id": ti["dag_id"],
            "run_id": ti["run_id"],
            "task_id": ti["task_id"],
            "map_index": ti.get("map_index", -1),
            "try_number": ti.get("try_number"),
            "received_at": received_at,
            "spawned_at": spawned_at,
            "finished_at": finished_at,
            "exit_code": exit_code,
        }
    )
    yield encode_event(
        FinishedEvent(
            exit_code=exit_code,
            state="success" if exit_code == 0 else "failed",
            timings=TaskTimings(received_at=received_at, finished_at=finished_at),
        )
    )


async def run_workload(request: Request) -> Response:
    received_at = time.time()
    body = json.loads(await request.body())
    return StreamingResponse(_run_fresh(body["workload"], received_at), media_type=STREAM_MEDIA_TYPE)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(
        routes=[
            Route(WORKLOAD_PATH, run_workload, methods=["POST"]),
            Route(LIVENESS_PATH, health),
            Route(READINESS_PATH, health),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
