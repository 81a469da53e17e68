"""When the executor may send a workload again, and how long it waits first.

The rule: a workload may be sent again only while no worker can have started it.
That holds for connection errors and for a 429/502/503/504 answer (the worker,
or Knative's activator in front of a cold service, refused before reading the
task). It stops holding at the worker's ``accepted`` event: from then on a
broken connection is reported, never retried.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential_jitter,
)


class NotAcceptedError(Exception):
    """The worker did not take the task; sending again is safe.

    ``cause`` names why in a few words (``http_503``, ``connection``,
    ``closed_before_accepted``): the executor counts its retries by it.
    """

    def __init__(self, reason: str, retry_after: float | None = None, cause: str = "connection") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.cause = cause


class RejectedError(Exception):
    """The worker refused the task for good (bad secret, invalid workload): retrying cannot help."""


class AcceptTimeoutError(Exception):
    """No ``accepted`` event in time; the worker may or may not hold the task, so it is not resent."""


class StreamBrokenError(Exception):
    """The connection broke after the worker accepted the task; its outcome is Airflow's to find out."""


def parse_retry_after(value: str | None) -> float | None:
    """Return a ``Retry-After`` header's delay in seconds (the seconds form only)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def token_expires_at(token: str) -> float | None:
    """Return a JWT's ``exp`` claim (epoch seconds), read without verifying; None if it has none.

    Only the expiry is needed here, to stop dispatching before the worker's token
    is useless; the Execution API verifies the token itself.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def seconds_left(token: str, margin: float) -> float | None:
    """Seconds until ``margin`` seconds before the token expires (negative once past); None if unknown."""
    expires_at = token_expires_at(token)
    return None if expires_at is None else expires_at - margin - time.time()


def time_limits_outlast_token(
    dispatch_deadline: float, accept_timeout: float, token_margin: float, token_life: float
) -> bool:
    """Whether retrying plus waiting for ``accepted`` can outlast a workload's token.

    Each task's dispatch is cut at its token's expiry anyway (``seconds_left``); this is
    for telling the operator at start-up that the configured limits will not hold as set.
    The defaults (240 + 300 <= 600 - 30) agree with Airflow's default
    ``[scheduler] task_queued_timeout``.
    """
    return dispatch_deadline + accept_timeout > token_life - token_margin


class WaitHonouringRetryAfter(wait_exponential_jitter):
    """Exponential backoff with jitter that never waits less than the server's ``Retry-After``."""

    def __call__(self, retry_state: RetryCallState) -> float:
        """Return the wait before the next attempt."""
        backoff = float(super().__call__(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        return max(backoff, retry_after) if retry_after is not None else backoff


def dispatch_retrying(
    *, deadline: float, initial_backoff: float, max_backoff: float, **kwargs: Any
) -> AsyncRetrying:
    """Return the retry loop for one dispatch: only :class:`NotAcceptedError`, until ``deadline`` seconds."""
    return AsyncRetrying(
        retry=retry_if_exception_type(NotAcceptedError),
        wait=WaitHonouringRetryAfter(multiplier=initial_backoff, max=max_backoff, jitter=initial_backoff),
        stop=stop_before_delay(deadline),  # never sleep past the deadline, then fail
        reraise=True,
        **kwargs,
    )
