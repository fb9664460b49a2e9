"""Bounds on what one request, and all of them together, can take from the server.

* `BodyGuard`: a body over `max_bytes` is a 413 before it is read (Content-Length) or as soon as
  it is (chunked, or a Content-Length that lies); a request whose body is not complete by the
  request's deadline is a 408. Starlette would otherwise read any body whole, however large or
  slow. The body is read before the request counts as a search.
* `ConcurrencyLimit`: at most `limit` searches at once, and a bounded waiting room in front
  of them (in number and in time); past it, 503 with `Retry-After` at once rather than a queue
  without bound. `/health` and `/ready` are not counted, so probes answer under load.

Connections themselves (the request-head deadline, keep-alive, caps per client address and in
all) are bounded by the server's protocol: `retrieval_api/connections.py`.
"""

from __future__ import annotations

import json
import os

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_DEADLINE = "sluice.request_deadline"
"""The scope key of the request's deadline (`anyio.current_time()`'s clock), set by
`connections.GuardedH11Protocol`."""


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
    """Reads each request's body whole before the app runs, then hands it on: a body over
    `max_bytes` is a 413 (before it is read, from Content-Length, or as soon as it is), and a
    request whose body is not complete by its deadline is a 408; both close the connection.
    The deadline is the one `GuardedH11Protocol` set for the whole request, head and body
    (`REQUEST_DEADLINE` in the scope), else `timeout_s` from now. Added outside
    `ConcurrencyLimit`, so a slow body never holds a search slot."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(send)
            return
        deadline = scope.get(REQUEST_DEADLINE) or anyio.current_time() + self.timeout_s
        chunks: list[bytes] = []
        seen, more = 0, True
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client went away: nobody to answer
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_bytes:
                        await self._too_large(send)
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            message_text = f"the request did not arrive within {self.timeout_s:g} s"
            await _send_error(send, 408, "request_timeout", message_text, Connection="close")
            return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        message = f"the body is larger than {self.max_bytes} bytes"
        await _send_error(send, 413, "body_too_large", message, Connection="close")


def searches_at_once(configured: int | None) -> int:
    """`SLUICE_MAX_CONCURRENT_SEARCHES`, or one per CPU core (at least 2): searches are CPU
    work in one process, so more at once adds no throughput, only a longer tail (measured)."""
    return configured or max(2, os.cpu_count() or 2)


class ConcurrencyLimit:
    """At most `limit` searches at once; up to `queued` more wait their turn in arrival order,
    each for at most `wait_s`; a search past both is answered 503 with `Retry-After` at once.
    A burst from many clients is served a little later rather than refused, while the wait
    stays bounded in time and in memory (docs/architecture.md, "Concurrency")."""

    UNCOUNTED = frozenset({"/health", "/ready"})

    def __init__(self, app: ASGIApp, limit: int, queued: int = 0, wait_s: float = 0.0) -> None:
        self.app, self.limit, self.queued, self.wait_s = app, limit, queued, wait_s
        self.slots = anyio.Semaphore(limit, fast_acquire=True)
        self.waiting = 0

    @property
    def in_flight(self) -> int:
        return self.limit - self.slots.value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNCOUNTED:
            await self.app(scope, receive, send)
            return
        if not await self._turn():
            message = (
                f"the server is answering {self.limit} requests and {self.waiting} are waiting; "
                "retry shortly"
            )
            await _send_error(send, 503, "overloaded", message, **{"Retry-After": "1"})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()

    async def _turn(self) -> bool:
        """Whether a slot was had: at once, or within `wait_s` in the waiting room."""
        if self.slots.value == 0 and self.waiting >= self.queued:
            return False
        self.waiting += 1
        try:
            with anyio.move_on_after(self.wait_s if self.slots.value == 0 else None):
                await self.slots.acquire()
                return True
            return False
        finally:
            self.waiting -= 1
