"""The uvicorn server `sluice serve` runs, configured from settings (and so are the tests that
open real sockets against it)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from config.settings import Settings
from retrieval_api.connections import ConnectionLimits, guarded_protocol

MAX_HEAD_BYTES = 16 * 1024
"""A request line and headers; a longer head is a 400."""


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        deadline_s=settings.client_timeout_s,
        keep_alive_s=settings.keep_alive_s,
        max_total=settings.max_connections,
        max_per_client=settings.max_connections_per_client,
    )


def server_config(
    app: FastAPI, settings: Settings, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    """No `limit_concurrency`: uvicorn's would answer 503 to everyone once idle connections
    reach it; the protocol's caps close idle ones instead (`retrieval_api/connections.py`)."""
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port if port is None else port,
        http=guarded_protocol(connection_limits(settings)),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_level=log_level,
    )
