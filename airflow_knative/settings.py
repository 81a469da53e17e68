"""The ``[knative_executor]`` configuration section: one declaration of every option.

Each field of :class:`ExecutorSettings` is one option; its metadata holds the
description and an example. Everything else is derived from it: the provider
info Airflow registers (``airflow config list``, defaults, types; see
:mod:`airflow_knative.provider_info`), the README's configuration table
(``make docs-tables``) and the reading in :func:`load_settings`.

Every option can be set in ``airflow.cfg`` or as the environment variable
``AIRFLOW__KNATIVE_EXECUTOR__<OPTION>``, like any Airflow option; for one team of
a multi-team deployment as ``AIRFLOW__<TEAM>___KNATIVE_EXECUTOR__<OPTION>`` or in
the section ``[<team>=knative_executor]``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SECTION = "knative_executor"

#: Python type of an option -> the ``type`` Airflow's provider info schema knows.
AIRFLOW_TYPES: dict[type, str] = {str: "string", int: "integer", float: "float", bool: "boolean"}


def _option(default: Any, doc: str, *, example: str | None = None, required: bool = False) -> Any:
    """Declare one option: default, description (``doc``), an example value, whether it must be set.

    ``example`` is a string as it would be written in ``airflow.cfg``. A test fails
    for an option without description or example, so the docs stay complete.
    """
    return field(default=default, metadata={"doc": doc, "example": example, "required": required})


@dataclass(frozen=True)
class ExecutorSettings:
    """Knobs of the KnativeExecutor; see each field's ``doc`` metadata."""

    routing_file: str = _option(
        "",
        "Routing table (YAML/JSON) mapping tasks to services. Required.",
        example="/opt/airflow/knative/routing.yaml",
        required=True,
    )
    secret_file: str = _option(
        "",
        "File holding the shared secret sent to workers (16 characters or more). Required.",
        example="/opt/airflow/knative/secret/worker-secret",
        required=True,
    )
    connect_timeout: float = _option(5.0, "Seconds to open a connection to a worker.", example="2.0")
    accept_timeout: float = _option(
        300.0,
        "Seconds to wait for `accepted` once a request is sent; covers a Knative cold start, "
        "during which the activator holds the request. Not retried: the worker may hold the task. "
        "Never waits past the workload token's expiry minus `token_margin`.",
        example="600.0",
    )
    dispatch_deadline: float = _option(
        240.0,
        "Seconds to keep retrying a task that no worker has accepted (cold starts, 429/5xx). "
        "Never retries past the workload token's expiry minus `token_margin`.",
        example="900.0",
    )
    token_margin: float = _option(
        30.0,
        "Seconds before the workload's token expires (Airflow issues it for [scheduler] "
        "task_queued_timeout) after which no worker is asked to start the task any more.",
        example="60.0",
    )
    retry_initial_backoff: float = _option(
        0.05, "First retry wait in seconds; doubles, with jitter.", example="0.2"
    )
    retry_max_backoff: float = _option(5.0, "Longest single retry wait in seconds.", example="10.0")
    stream_idle_timeout: float = _option(
        120.0,
        "Seconds without any event from an accepted task before the stream counts as broken.",
        example="60.0",
    )
    inline_max_bytes: int = _option(
        256 * 1024,
        "Largest total of upstream values sent inline with one task; the rest go via the API.",
        example="1048576",
    )
    inline_cache_max_bytes: int = _option(
        64 * 1024 * 1024,
        "Memory the executor may keep for return values it may send downstream.",
        example="268435456",
    )
    inline_wait_timeout: float = _option(
        5.0,
        "Seconds a task waits for an upstream's `finished` event when Airflow already recorded "
        "that upstream's end, so its value travels inline instead of via the API.",
        example="10.0",
    )
    watch_interval: float = _option(
        5.0,
        "Seconds between database checks of tasks the executor no longer streams (adopted from "
        "another scheduler, or whose stream broke) until Airflow records their end.",
        example="15.0",
    )
    watch_batch_size: int = _option(
        500, "Most watched tasks read from the database in one check.", example="1000"
    )
    callback_service: str = _option(
        "",
        "Service that runs executor callbacks (deadline alerts) and connection tests; empty: a service "
        "of the callback's DAG, else the first service of the routing file.",
        example="etl-callbacks",
    )

    prewarm: bool = _option(
        True,
        "Wake the services of a task's downstream tasks when it is dispatched (a GET of the readiness "
        "path, which on Knative scales a service from zero), so their start overlaps its run. Never "
        "runs a task.",
        example="False",
    )
    prewarm_max_services: int = _option(
        8,
        "Most services woken per dispatched task (nearest downstream first); each may start one pod "
        "that stays until Knative scales it back to zero.",
        example="4",
    )

    @property
    def routing_path(self) -> Path:
        """The routing file as a path."""
        return Path(self.routing_file)


#: Options without a usable default: the executor does not start without them.
REQUIRED_OPTIONS = tuple(
    spec.name for spec in dataclasses.fields(ExecutorSettings) if spec.metadata.get("required")
)


_BOOLEANS = {"t": True, "true": True, "1": True, "f": False, "false": False, "0": False}


@dataclass(frozen=True)
class OptionSpec:
    """One option as the docs and Airflow's provider info describe it, read off its field."""

    name: str
    kind: type
    default: Any
    description: str
    example: str | None
    required: bool

    @property
    def airflow_type(self) -> str:
        """``string``, ``integer``, ``float`` or ``boolean``."""
        return AIRFLOW_TYPES[self.kind]

    @property
    def default_text(self) -> str | None:
        """The default as written in ``airflow.cfg``; ``None`` when there is none (required options)."""
        return None if self.required or self.default is None else str(self.default)

    def parse(self, raw: str) -> Any:
        """Turn the option's text into its declared type (booleans as Airflow spells them)."""
        if self.kind is bool:
            try:
                return _BOOLEANS[raw.strip().lower()]
            except KeyError:
                raise ValueError("not a boolean (true/false, t/f, 1/0)") from None
        return self.kind(raw)

    def env_var(self, team_name: str | None = None) -> str:
        """``AIRFLOW__KNATIVE_EXECUTOR__<OPTION>`` (``AIRFLOW__<TEAM>___...`` for a team)."""
        team = f"{team_name.upper()}___" if team_name else ""
        return f"AIRFLOW__{team}{SECTION.upper()}__{self.name.upper()}"

    def where(self, team_name: str | None = None) -> str:
        """``[knative_executor] <option>`` (``[<team>=knative_executor] ...`` for a team)."""
        section = f"{team_name}={SECTION}" if team_name else SECTION
        return f"[{section}] {self.name}"


def _plain_type(annotation: Any, name: str) -> type:
    """``float`` for ``float``, ``str`` for ``str | None``; an error for types airflow.cfg cannot hold."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    if annotation not in AIRFLOW_TYPES:
        raise TypeError(
            f"[{SECTION}] {name}: type {annotation!r} is not an airflow.cfg type "
            f"({', '.join(t.__name__ for t in AIRFLOW_TYPES)})"
        )
    return typing.cast(type, annotation)


def option_specs(settings_class: type[ExecutorSettings] = ExecutorSettings) -> list[OptionSpec]:
    """Every ``[knative_executor]`` option, in declaration order."""
    hints = typing.get_type_hints(settings_class)
    return [
        OptionSpec(
            name=spec.name,
            kind=_plain_type(hints[spec.name], spec.name),
            default=spec.default,
            description=str(spec.metadata.get("doc") or ""),
            example=spec.metadata.get("example"),
            required=bool(spec.metadata.get("required", False)),
        )
        for spec in dataclasses.fields(settings_class)
    ]


class ConfigSource(Protocol):
    """What :func:`load_settings` reads from: Airflow's ``conf`` or an executor's team-bound ``self.conf``."""

    def get(self, *args: Any, **kwargs: Any) -> str | None:
        """``get(section, key, fallback=...)`` as on Airflow's configuration parser."""
        ...


class SettingsError(ValueError):
    """A required option is missing or an option has the wrong type."""


def load_settings(conf: ConfigSource | None = None) -> ExecutorSettings:
    """Read ``[knative_executor]`` through ``conf``: the executor's ``self.conf`` or Airflow's ``conf``.

    An executor's ``self.conf`` is bound to its team, so each team's executor reads
    its own routing file and secret; without a team it reads the plain section.
    """
    if conf is None:
        from airflow.configuration import conf as airflow_conf

        conf = airflow_conf
    team_name: str | None = getattr(conf, "team_name", None)
    values: dict[str, Any] = {}
    options = option_specs()
    for option in options:
        raw = conf.get(SECTION, option.name, fallback=None)
        if raw is None or raw == "":
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{option.where(team_name)} = {raw!r}: {exc}") from exc
    settings = ExecutorSettings(**values)
    for option in options:
        if option.required and not getattr(settings, option.name):
            raise SettingsError(
                f"{option.where(team_name)} is not set: set it in airflow.cfg or as "
                f"{option.env_var(team_name)}"
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
