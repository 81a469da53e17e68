"""The ``GET /metrics`` endpoint the worker and the gateway share (Prometheus text format).

Both serve the process-wide default registry of the standard client library,
``prometheus_client``: their own metrics (worker/metrics.py, gateway/metrics.py)
plus the library's process and Python collectors. Only the process that serves
HTTP counts anything: the worker's pre-forked pool processes never touch these
metrics, so no multiprocess mode is needed. docs/metrics.md lists every metric.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response

METRICS_PATH = "/metrics"

#: Histogram buckets (seconds) for anything from a cached answer to an hour-long task.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: every metric of this process, for Prometheus to scrape (no auth, no secrets)."""
    return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
