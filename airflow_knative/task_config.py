"""Per-task Knative settings a DAG author writes in ``executor_config={"knative": {...}}``.

The generator reads them to shape each task's Knative Service, and the executor
reads ``service`` to route a task to a shared service: both parse through
:class:`KnativeTaskConfig`, so a typo fails the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_knative.naming import validate_service_name

EXECUTOR_CONFIG_KEY = "knative"


class ResourceSpec(BaseModel):
    """Kubernetes-style quantities, e.g. ``{"cpu": "500m", "memory": "512Mi"}``."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = None
    memory: str | None = None


class Resources(BaseModel):
    """Container requests and limits of a task's worker."""

    model_config = ConfigDict(extra="forbid")

    requests: ResourceSpec | None = None
    limits: ResourceSpec | None = None


class KnativeTaskConfig(BaseModel):
    """What a task may say about the Knative Service that runs it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    service: str | None = Field(default=None, description="Explicit (shared) service name.")
    min_scale: int | None = Field(default=None, ge=0)
    max_scale: int | None = Field(default=None, ge=0)
    target: int | None = Field(default=None, ge=1, description="Autoscaling target per pod.")
    container_concurrency: int | None = Field(default=None, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=1)
    resources: Resources | None = None

    @field_validator("service")
    @classmethod
    def _valid_service(cls, value: str | None) -> str | None:
        if value is not None:
            validate_service_name(value, source='executor_config["knative"]["service"]')
        return value


class InvalidTaskConfigError(ValueError):
    """``executor_config["knative"]`` of a task does not parse."""


def parse_task_config(executor_config: dict[str, Any] | None, *, where: str) -> KnativeTaskConfig:
    """Return the Knative part of a task's ``executor_config``.

    ``where`` names the task (``dag_id.task_id``) so errors say which one to fix.
    """
    raw = (executor_config or {}).get(EXECUTOR_CONFIG_KEY) or {}
    if not isinstance(raw, dict):
        raise InvalidTaskConfigError(
            f'{where}: executor_config["{EXECUTOR_CONFIG_KEY}"] must be a dict, got {type(raw).__name__}'
        )
    try:
        return KnativeTaskConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidTaskConfigError(
            f'{where}: executor_config["{EXECUTOR_CONFIG_KEY}"] is invalid: {problems}'
        ) from exc
