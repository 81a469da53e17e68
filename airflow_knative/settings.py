"""The ``[knative_executor]`` configuration section, with its defaults in one place.

Every option can be set in ``airflow.cfg`` or as the environment variable
``AIRFLOW__KNATIVE_EXECUTOR__<OPTION>``, like any Airflow option. The README's
configuration reference lists the same names and defaults (a test keeps them in step).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTION = "knative_executor"

#: Options without a usable default: the executor does not start without them.
REQUIRED_OPTIONS = ("routing_file", "secret_file")


def _option(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class ExecutorSettings:
    """Knobs of the KnativeExecutor; see each field's ``doc`` metadata."""

    routing_file: str = _option("", "Routing table (YAML/JSON) mapping tasks to services. Required.")
    secret_file: str = _option("", "File holding the shared secret sent to workers. Required.")
    connect_timeout: float = _option(5.0, "Seconds to open a connection to a worker.")
    accept_timeout: float = _option(
        300.0,
        "Seconds to wait for `accepted` once a request is sent; covers a Knative cold start, "
        "during which the activator holds the request. Not retried: the worker may hold the task. "
        "Never waits past the workload token's expiry minus `token_margin`.",
    )
    dispatch_deadline: float = _option(
        300.0,
        "Seconds to keep retrying a task that no worker has accepted (cold starts, 429/5xx). "
        "Never retries past the workload token's expiry minus `token_margin`.",
    )
    token_margin: float = _option(
        30.0,
        "Seconds before the workload's token expires (Airflow issues it for [scheduler] "
        "task_queued_timeout) after which no worker is asked to start the task any more.",
    )
    retry_initial_backoff: float = _option(0.05, "First retry wait in seconds; doubles, with jitter.")
    retry_max_backoff: float = _option(5.0, "Longest single retry wait in seconds.")
    stream_idle_timeout: float = _option(
        120.0, "Seconds without any event from an accepted task before the stream counts as broken."
    )
    inline_max_bytes: int = _option(
        256 * 1024, "Largest total of upstream values sent inline with one task; the rest go via the API."
    )
    inline_cache_max_bytes: int = _option(
        64 * 1024 * 1024, "Memory the executor may keep for return values it may send downstream."
    )
    inline_wait_timeout: float = _option(
        5.0,
        "Seconds a task waits for an upstream's `finished` event when Airflow already recorded "
        "that upstream's end, so its value travels inline instead of via the API.",
    )
    watch_interval: float = _option(
        5.0,
        "Seconds between database checks of tasks the executor no longer streams (adopted from "
        "another scheduler, or whose stream broke) until Airflow records their end.",
    )
    watch_batch_size: int = _option(500, "Most watched tasks read from the database in one check.")
    callback_service: str = _option(
        "",
        "Service that runs executor callbacks (deadline alerts) and connection tests; empty: a service "
        "of the callback's DAG, else the first service of the routing file.",
    )

    @property
    def routing_path(self) -> Path:
        """The routing file as a path."""
        return Path(self.routing_file)


class SettingsError(ValueError):
    """A required option is missing or an option has the wrong type."""


def _convert(spec: dataclasses.Field[Any], raw: str) -> Any:
    """Turn an option's text into the type of its default (int, float or str)."""
    kind = type(spec.default)
    return kind(raw) if kind in (int, float) else raw


def load_settings() -> ExecutorSettings:
    """Read ``[knative_executor]`` from Airflow's configuration."""
    from airflow.configuration import conf

    values: dict[str, Any] = {}
    for spec in dataclasses.fields(ExecutorSettings):
        raw = conf.get(SECTION, spec.name, fallback=None)
        if raw is None or raw == "":
            continue
        try:
            values[spec.name] = _convert(spec, raw)
        except ValueError as exc:
            raise SettingsError(f"[{SECTION}] {spec.name} = {raw!r}: {exc}") from exc
    settings = ExecutorSettings(**values)
    for required in REQUIRED_OPTIONS:
        if not getattr(settings, required):
            raise SettingsError(
                f"[{SECTION}] {required} is not set: set it in airflow.cfg or as "
                f"AIRFLOW__{SECTION.upper()}__{required.upper()}"
            )
    return settings


def read_secret(path: str | Path, *, what: str) -> str:
    """Return the shared secret stored in ``path`` (surrounding white space removed)."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read secret file {path}: {exc}") from exc
    if len(secret) < 16:
        raise SettingsError(f"{what}: secret in {path} is shorter than 16 characters")
    return secret
