"""A real uvicorn server on a free loopback port, configured as `sluice serve` configures it
(`retrieval_api/server.py`), in a thread of the test process: for tests where sockets matter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from config.settings import Settings
from retrieval_api.server import server_config
from tests.conftest import free_port


@contextmanager
def serving(app: FastAPI, settings: Settings) -> Iterator[int]:
    """The port, once the server accepts connections; stopped on exit."""
    port = free_port()
    server = uvicorn.Server(server_config(app, settings, port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
