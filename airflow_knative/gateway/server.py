"""Run the gateway app under uvicorn, with quiet server logs and one line per workflow call."""

from __future__ import annotations

import logging

import uvicorn

from airflow_knative.gateway.app import create_app
from airflow_knative.gateway.settings import GatewaySettings

logger = logging.getLogger("airflow_knative.gateway")


def serve(settings: GatewaySettings) -> int:
    """Serve until SIGINT/SIGTERM; return the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # one INFO line per Airflow request would drown the summaries
        logging.getLogger(chatty).setLevel(logging.WARNING)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,  # the app logs one summary line per workflow call instead
        lifespan="on",
    )
    server = uvicorn.Server(config)
    logger.info(
        "gateway on http://%s:%d in front of Airflow at %s",
        settings.host,
        settings.port,
        settings.airflow_url,
    )
    server.run()
    return 0 if server.started else 1
