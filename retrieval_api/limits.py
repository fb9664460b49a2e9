"""Bounds on what one request, and all of them together, can take from the server.

* `BodyGuard`: a body over `max_bytes` is a 413 before it is read (Content-Length) or as soon as
  it is (chunked, or a Content-Length that lies); a body that does not arrive within
  `timeout_s` is a 408. Starlette would otherwise read any body whole, however large or slow.
* `ConcurrencyLimit`: at most `limit` searches at once; one more is answered 503 with
  `Retry-After` at once, rather than queued without bound. `/health` and `/ready` are not
  counted, so probes answer under load.
* `HeadDeadline`: uvicorn's HTTP/1.1 protocol closing a connection whose request head is not
  complete `head_timeout_s` after it opened or after its last response: idle and
  slow-header (slowloris) connections, which uvicorn alone keeps open indefinitely.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


async def _send_error(send: Send, status: int, code: str, message: str, **headers: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Add with `app.add_middleware`: it runs inside Starlette's error handling, so the 408 and
    413 it raises while the route reads the body come out as the API's JSON errors."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            message = f"the body is larger than {self.max_bytes} bytes"
            await _send_error(send, 413, "body_too_large", message, Connection="close")
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            try:
                with anyio.fail_after(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the body did not arrive within {self.timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded, send)


class ConcurrencyLimit:
    """One event loop runs the app, so a plain counter is exact."""

    UNCOUNTED = frozenset({"/health", "/ready"})

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.in_flight = app, limit, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNCOUNTED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            message = f"the server is answering {self.limit} requests already; retry shortly"
            await _send_error(send, 503, "overloaded", message, **{"Retry-After": "1"})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class HeadDeadline(H11Protocol):
    """Uses uvicorn's protocol internals (`cycle`, `on_response_complete`): uvicorn is pinned
    below its next minor version, and `tests/test_limits.py` opens real sockets against it."""

    head_timeout_s = 10.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.head_timeout_s, self._expire, self.cycle)

    def _expire(self, cycle_when_armed: object) -> None:
        """No request head completed since the deadline was armed: close the connection."""
        if self.cycle is cycle_when_armed and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadline.cancel()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)


def head_deadline(seconds: float) -> type[HeadDeadline]:
    """The protocol class `uvicorn.Config(http=…)` takes, with this deadline."""
    return type("HeadDeadline", (HeadDeadline,), {"head_timeout_s": seconds})
