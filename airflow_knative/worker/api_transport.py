"""The pool process's one connection pool to Airflow's Execution API.

A supervisor's ``httpx.Client`` normally builds its transport per task, and with it
a TLS context: loading the CA bundle costs about 35 ms on an idle core (over
100 ms on a busy one), paid before the task process is even forked. A pool process
runs one workload at a time, so it keeps one transport for all of them: the TLS
context is built once, when the pool process starts, and keep-alive connections to
the API server carry over from task to task.

The transport is built with Airflow's own ``[api]`` TLS settings (the CA file or
path, client certificate and key, ``client_use_public_certs``), the ones Airflow's
``Client`` would use, since a transport passed to that client replaces its own.
Task processes forked from the pool process inherit the pool's sockets but never
use them: they talk to their supervisor only.
"""

from __future__ import annotations

import functools

import httpx


@functools.cache
def execution_api_transport() -> httpx.HTTPTransport:
    """The transport every task of this process sends its Execution API calls through."""
    from airflow.sdk.api import client as sdk_client

    verify = sdk_client.Client._get_ssl_context_cached(
        sdk_client.API_SSL_CA_FILE_PATH, sdk_client.API_SSL_CERT_PATH
    )
    cert = None
    if sdk_client.API_CLIENT_SSL_CERT or sdk_client.API_CLIENT_SSL_KEY:
        if not (sdk_client.API_CLIENT_SSL_CERT and sdk_client.API_CLIENT_SSL_KEY):
            raise ValueError("[api] client_ssl_cert and client_ssl_key must be set together")
        cert = (sdk_client.API_CLIENT_SSL_CERT, sdk_client.API_CLIENT_SSL_KEY)
    # Airflow's client retries failed calls itself (tenacity); the transport does not.
    return httpx.HTTPTransport(retries=0, verify=verify, cert=cert)
