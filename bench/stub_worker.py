"""A stub worker for the dispatch benchmark: answers every workload at once (``accepted`` + ``finished``).

python -m bench.stub_worker --port 30123
"""

from __future__ import annotations

import argparse
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_knative.protocol import (
    READINESS_PATH,
    STREAM_MEDIA_TYPE,
    WORKLOAD_PATH,
    AcceptedEvent,
    FinishedEvent,
    TaskTimings,
    encode_event,
)


async def run_workload(request: Request) -> Response:
    received_at = time.time()
    await request.body()
    body = encode_event(AcceptedEvent(worker="stub", received_at=received_at)) + encode_event(
        FinishedEvent(exit_code=0, state="success", timings=TaskTimings(received_at=received_at))
    )
    return Response(body, media_type=STREAM_MEDIA_TYPE)


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(
        routes=[Route(WORKLOAD_PATH, run_workload, methods=["POST"]), Route(READINESS_PATH, ready)]
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
