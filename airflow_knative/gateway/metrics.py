"""The gateway's Prometheus metrics (served on ``GET /metrics``, see airflow_knative/prometheus.py).

Labels hold fixed words only, never a DAG id or a user name: anyone who can
reach the gateway can call any path, and must not be able to grow the label set.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from airflow_knative.prometheus import DURATION_BUCKETS

RUNS_TRIGGERED = Counter(
    "airflow_knative_gateway_runs_triggered", "DAG runs the gateway triggered in Airflow."
)
RESULTS = Counter(
    "airflow_knative_gateway_results",
    "Answers to POST /runWorkflow, by outcome: success, failed (the run failed), accepted "
    "(?wait=false), timeout (the run outlasted --wait-timeout), client_gone, refused (4xx before a "
    "run was triggered), error (anything else).",
    ["outcome"],
)
WAIT_DURATION = Histogram(
    "airflow_knative_gateway_wait_duration_seconds",
    "How long the gateway waited for a triggered run to end (or gave up), per waiting call.",
    buckets=DURATION_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "airflow_knative_gateway_request_duration_seconds",
    "POST /runWorkflow from arrival to answer, whatever the outcome.",
    buckets=DURATION_BUCKETS,
)
LOGIN_FAILURES = Counter(
    "airflow_knative_gateway_login_failures",
    "Logins refused: 'airflow' (Airflow rejected the credentials) or 'cached' (rejected again from "
    "the negative cache without asking Airflow).",
    ["source"],
)
LOGINS_RATE_LIMITED = Counter(
    "airflow_knative_gateway_logins_rate_limited",
    "Logins answered 429: too many failed logins from the client address or for the user name.",
)


def result_outcome(status: int, triggered: bool, run_state: str) -> str:
    """The ``outcome`` label of one POST /runWorkflow answer."""
    if status == 202:
        return "accepted"
    if status == 499:
        return "client_gone"
    if not triggered:
        return "refused" if status < 500 else "error"
    if status == 504:
        return "timeout"
    if run_state in ("success", "failed"):
        return run_state
    return "error"
