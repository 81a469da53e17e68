"""Every failure the gateway answers, as one exception type rendered as a JSON body.

The rule for callers: the status code says who should act (4xx: the caller,
5xx: the workflow or the platform) and ``error`` says what happened and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from airflow_knative.gateway.airflow_api import (
    AirflowApiError,
    AirflowBadResponse,
    AirflowForbidden,
    AirflowNotFound,
    AirflowUnreachable,
    CredentialsRejected,
    LoginsThrottled,
)
from airflow_knative.gateway.auth import WWW_AUTHENTICATE


class GatewayError(Exception):
    """An answer other than success: status, message and extra JSON fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: ``error`` first, then the extra fields."""
        return {"error": self.message, **self.extra}

    def response(self) -> JSONResponse:
        """Render as a Starlette response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def unauthorized(message: str) -> GatewayError:
    """401 with the challenge that makes clients (and browsers) send Basic credentials."""
    return GatewayError(401, message, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def from_airflow(  # noqa: PLR0911  # one return per kind of failure
    exc: AirflowApiError, *, not_found: GatewayError | None = None
) -> GatewayError:
    """Map an Airflow API failure to the gateway's answer.

    ``not_found`` is the answer for a 404, which only the caller knows how to phrase
    (unknown DAG, unknown run...); without it a 404 is an unexpected answer (502).
    """
    if isinstance(exc, LoginsThrottled):
        return GatewayError(429, str(exc), headers={"Retry-After": f"{math.ceil(exc.retry_after)}"})
    if isinstance(exc, CredentialsRejected):
        return unauthorized(f"{exc}: check the user name and password sent with HTTP Basic auth")
    if isinstance(exc, AirflowForbidden):
        return GatewayError(403, f"{exc}; ask an Airflow admin for access to this DAG")
    if isinstance(exc, AirflowNotFound) and not_found is not None:
        return not_found
    if isinstance(exc, AirflowUnreachable):
        return GatewayError(
            502,
            f"{exc}; check that the Airflow API server runs and that --airflow-url "
            "(AIRFLOW_KNATIVE_AIRFLOW_URL) points to it",
            extra={"airflow_url": exc.url},
        )
    if isinstance(exc, AirflowBadResponse):
        return GatewayError(
            502, f"{exc}; see the Airflow API server's log", extra={"airflow_status": exc.status}
        )
    return GatewayError(502, f"unexpected answer from Airflow: {exc}")
