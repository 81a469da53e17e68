"""A scripted stand-in for a worker: a real HTTP server speaking :mod:`airflow_knative.protocol`.

A small Starlette app served by uvicorn on 127.0.0.1 (ephemeral port) in a
background thread. Each test scripts what it answers to the 1st, 2nd, ... POST
and reads back what it received (count, arrival times, bodies, headers).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from airflow_knative.protocol import (
    STREAM_MEDIA_TYPE,
    WORKLOAD_PATH,
    AcceptedEvent,
    FinishedEvent,
    HeartbeatEvent,
    TaskTimings,
    encode_event,
)

Behaviour = Callable[["StubWorker"], Awaitable[Response]]


@dataclass(frozen=True)
class Received:
    """One POST the stub saw."""

    at: float  # time.monotonic() on arrival
    body: dict[str, Any]
    headers: dict[str, str]
    client_port: int  # the executor's side of the TCP connection: one port per connection


class StubWorker:
    """A scripted worker: the n-th POST gets ``script[n]`` (the last entry repeats)."""

    def __init__(self, *script: Behaviour) -> None:
        assert script, "a stub needs at least one behaviour"
        self.script = script
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        app = Starlette(routes=[Route(WORKLOAD_PATH, self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            log_level="critical",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.port = 0
        self.heartbeats_sent = 0

    def start(self, sock: socket.socket | None = None) -> StubWorker:
        """Serve on ``sock`` (already bound) or on a fresh ephemeral port of 127.0.0.1."""
        sockets = [sock] if sock is not None else None
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": sockets}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self._thread.is_alive(), "stub worker failed to start"
            assert time.monotonic() < deadline, "stub worker did not start within 10 s"
            time.sleep(0.005)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> int:
        with self._lock:
            return len(self.received)

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, cut short when the stub stops."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = json.loads(await request.body())
        with self._lock:
            attempt = len(self.received)
            port = request.client.port if request.client else 0
            self.received.append(Received(arrived, body, dict(request.headers), port))
        return await self.script[min(attempt, len(self.script) - 1)](self)


# -- behaviours ---------------------------------------------------------------------------


def finished(state: str | None = "success", exit_code: int = 0, **fields: Any) -> FinishedEvent:
    return FinishedEvent(
        exit_code=exit_code, state=state, timings=TaskTimings(received_at=time.time()), **fields
    )


def status(code: int, headers: dict[str, str] | None = None) -> Behaviour:
    """Answer ``code`` before taking the task."""

    async def behaviour(stub: StubWorker) -> Response:
        return Response(f"stub says {code}", status_code=code, headers=headers)

    return behaviour


def run(result: FinishedEvent | None = None, *, heartbeats: int = 0, accept_delay: float = 0.0) -> Behaviour:
    """Take the task: ``accepted``, ``heartbeats`` heartbeats, then ``finished``."""

    async def behaviour(stub: StubWorker) -> Response:
        await stub.pause(accept_delay)

        async def events() -> Any:
            yield encode_event(AcceptedEvent(worker="stub", received_at=time.time()))
            for _ in range(heartbeats):
                yield encode_event(HeartbeatEvent())
                await asyncio.sleep(0.01)
            yield encode_event(result or finished())

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def accept_then_break() -> Behaviour:
    """Take the task, then drop the connection before ``finished``."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            yield encode_event(AcceptedEvent(worker="stub", received_at=time.time()))
            yield encode_event(HeartbeatEvent())
            raise ConnectionAbortedError("stub worker died under the task")

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def accept_then_send(line: bytes) -> Behaviour:
    """Take the task, then send ``line`` and end the stream."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            yield encode_event(AcceptedEvent(worker="stub", received_at=time.time()))
            yield line

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def accept_then_hold() -> Behaviour:
    """Take the task, send one heartbeat, then keep the stream open and quiet until the stub stops."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            yield encode_event(AcceptedEvent(worker="stub", received_at=time.time()))
            yield encode_event(HeartbeatEvent())
            stub.heartbeats_sent += 1
            await stub.pause(60)

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def accept_then_flood() -> Behaviour:
    """Take the task, then send heartbeats as fast as possible until the stub stops."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            yield encode_event(AcceptedEvent(worker="stub", received_at=time.time()))
            while not stub.stopped:
                yield encode_event(HeartbeatEvent())
                stub.heartbeats_sent += 1
                await asyncio.sleep(0.001)

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def open_stream_then_silence(seconds: float = 60.0) -> Behaviour:
    """Answer 200 and send nothing: no ``accepted`` ever comes."""

    async def behaviour(stub: StubWorker) -> Response:
        async def events() -> Any:
            await stub.pause(seconds)
            yield b""

        return StreamingResponse(events(), media_type=STREAM_MEDIA_TYPE)

    return behaviour


def no_answer(seconds: float = 60.0) -> Behaviour:
    """Read the request and send nothing back, not even response headers."""

    async def behaviour(stub: StubWorker) -> Response:
        await stub.pause(seconds)
        return Response(status_code=503)

    return behaviour


def plain_200(text: str) -> Behaviour:
    """Answer 200 with a body that is not the protocol (e.g. a misrouted URL)."""

    async def behaviour(stub: StubWorker) -> Response:
        return Response(text, status_code=200, media_type="text/html")

    return behaviour
