"""The wire contract between the KnativeExecutor and a worker.

The executor ``POST``s a :class:`DispatchRequest` to :data:`WORKLOAD_PATH` with the
shared secret in :data:`SECRET_HEADER`. The worker answers either with an error
status before it takes the task (401, 400, 429 or 503, which the executor may
retry where safe), or with ``200`` and a stream of newline-delimited JSON
events: one ``accepted``, ``heartbeat``s while the task runs, and one
``finished``. Once ``accepted`` arrives the executor never sends the workload
again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

WORKLOAD_PATH = "/v1/workloads"
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
SECRET_HEADER = "X-Airflow-Knative-Secret"
#: On a pre-warm GET: how many dependency steps below the dispatched task the task this
#: service runs is (1 = a direct downstream). Knative ignores it; the local activator starts
#: the nearest first when it cannot start them all at once.
PREWARM_DISTANCE_HEADER = "X-Airflow-Knative-Prewarm-Distance"
DEFAULT_WORKER_PORT = 8080
STREAM_MEDIA_TYPE = "application/x-ndjson"

#: Status codes a worker (or the Knative activator/queue-proxy in front of it)
#: answers before the task was taken: sending again cannot run the task twice.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class InlineXCom(BaseModel):
    """An upstream return value carried in the request, as stored by Airflow's XCom backend."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    map_index: int = -1
    value: Any = None


class DispatchRequest(BaseModel):
    """Body of ``POST /v1/workloads``: the workload as Airflow serialises it, plus inline values."""

    model_config = ConfigDict(extra="forbid")

    workload: dict[str, Any]
    inline_xcoms: list[InlineXCom] = []


class AcceptedEvent(BaseModel):
    """The worker took the task; from here on a retry could run it twice."""

    event: Literal["accepted"] = "accepted"
    worker: str
    received_at: float


class HeartbeatEvent(BaseModel):
    """Sent while the task runs so proxies do not cut an idle-looking stream."""

    event: Literal["heartbeat"] = "heartbeat"


class TaskTimings(BaseModel):
    """Wall-clock timestamps (``time.time()``) taken inside the worker."""

    received_at: float
    started_at: float | None = None
    finished_at: float | None = None


class FinishedEvent(BaseModel):
    """The task process ended; ``state`` is what the task reported to Airflow."""

    event: Literal["finished"] = "finished"
    exit_code: int
    state: str | None = None
    has_return_value: bool = False
    return_value: Any = None
    xcom_reads_inline: int = 0
    xcom_reads_api: int = 0
    timings: TaskTimings
    error: str | None = None


StreamEvent = Annotated[AcceptedEvent | HeartbeatEvent | FinishedEvent, Field(discriminator="event")]
STREAM_EVENT_ADAPTER: TypeAdapter[AcceptedEvent | HeartbeatEvent | FinishedEvent] = TypeAdapter(StreamEvent)


def encode_event(event: BaseModel) -> bytes:
    """Serialise one stream event as a JSON line."""
    return event.model_dump_json().encode() + b"\n"


def encode_dispatch_request(workload_json: str, inline_xcoms: list[InlineXCom]) -> bytes:
    """Build a :class:`DispatchRequest` body around an already-serialised workload.

    The scheduler serialises each workload once (``model_dump_json``); splicing
    that text in avoids parsing and re-serialising it on the dispatch hot path.
    """
    inline = ",".join(x.model_dump_json() for x in inline_xcoms)
    return f'{{"workload":{workload_json},"inline_xcoms":[{inline}]}}'.encode()
