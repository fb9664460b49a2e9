"""Connections a stranger cannot hoard: uvicorn's HTTP/1.1 protocol with one deadline per
request and caps on open connections, per client address and in all.

* **One deadline per request.** A request's head and body must both arrive within
  `deadline_s` of the connection's opening or of its last answer. A head not complete by then
  closes the connection (idle and slow-header connections, which uvicorn alone keeps open
  indefinitely); a body not complete by then gets 408 from `BodyGuard`, which reads the same
  deadline from the request's scope (`REQUEST_DEADLINE`), and the connection is closed a second
  later if nothing answered. Sending a byte now and then buys nothing.
* **Keep-alive.** An answered connection with no new request closes after `keep_alive_s`.
* **Caps.** A new connection beyond `max_per_client` from its address, or beyond `max_total`,
  makes room by closing the connection that has waited longest for a request (of that address,
  or of any): idle strangers cannot crowd out clients that are asking something, and a
  connection whose request is in progress is never closed for room. With no idle connection to
  close, the new one is answered 503 and closed at once; the others are not disturbed.

>>> limits = ConnectionLimits(10.0, 5.0, 512, 64)
>>> uvicorn.Config(app, http=guarded_protocol(limits))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from retrieval_api.limits import REQUEST_DEADLINE

logger = logging.getLogger("sluice.api")
BODY_GRACE_S = 1.0
"""After a late body's deadline: time for the app's 408 before the connection is closed."""
WARN_EVERY_S = 60.0
"""Refused connections are logged at most this often, with their count."""


@dataclass(frozen=True)
class ConnectionLimits:
    deadline_s: float
    keep_alive_s: float
    max_total: int
    max_per_client: int


def longest_idle(connections: Iterable[GuardedH11Protocol]) -> GuardedH11Protocol | None:
    """The connection that has waited longest for a request; None if every one is busy."""
    idle = [c for c in connections if c.idle]
    return min(idle, key=lambda c: c.idle_since, default=None)


class GuardedH11Protocol(H11Protocol):
    """Uses uvicorn's protocol internals (`cycle`, `connections`, `on_response_complete`,
    `timeout_keep_alive`): uvicorn is pinned below its next minor version, and
    `tests/test_limits.py` and `tests/test_connections.py` open real sockets against it."""

    limits = ConnectionLimits(10.0, 5.0, 512, 64)
    refused = 0
    warned_at = -WARN_EVERY_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]
        self.idle_since = 0.0
        self.request_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        app: ASGIApp = self.app

        async def with_deadline(scope: Scope, receive: Receive, send: Send) -> None:
            scope[REQUEST_DEADLINE] = self.request_deadline
            await app(scope, receive, send)

        self.app = with_deadline

    @property
    def address(self) -> str | None:
        return self.client[0] if self.client else None

    @property
    def idle(self) -> bool:
        """Waiting for a request head (none yet, or the last one answered), and still open."""
        waiting = self.cycle is None or self.cycle.response_complete
        return waiting and not self.transport.is_closing()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()
        if not self._make_room():
            self._refuse()

    def _open_peers(self) -> list[GuardedH11Protocol]:
        return [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()
        ]

    def _make_room(self) -> bool:
        """Close the longest-idle connections the caps call for; False if none can go."""
        peers = self._open_peers()
        if self.address is not None:
            same = [c for c in peers if c.address == self.address]
            if len(same) >= self.limits.max_per_client:
                if (victim := longest_idle(same)) is None:
                    return False
                victim.transport.close()
                peers.remove(victim)
        if len(peers) >= self.limits.max_total:
            if (victim := longest_idle(peers)) is None:
                return False
            victim.transport.close()
        return True

    def _refuse(self) -> None:
        message = "too many connections are busy (from your address, or in all); retry shortly"
        body = json.dumps({"error": {"code": "too_many_connections", "message": message}})
        head = (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
        )
        cls = type(self)
        cls.refused += 1
        if self.loop.time() - cls.warned_at >= WARN_EVERY_S:  # an attacker cannot flood the log
            logger.warning("refused %d connection(s), the last from %s", cls.refused, self.address)
            cls.refused, cls.warned_at = 0, self.loop.time()
        self.transport.write((head + body).encode())
        self.transport.close()

    def _arm(self) -> None:
        """Start the deadline of the next request: now, at the opening or after an answer."""
        if self._timer is not None:
            self._timer.cancel()
        self.idle_since = self.loop.time()
        self.request_deadline = self.idle_since + self.limits.deadline_s
        self._timer = self.loop.call_at(self.request_deadline, self._expire, self.cycle)

    def _expire(self, cycle_when_armed: object) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is cycle_when_armed:  # no request head since the deadline was armed
            self.transport.close()
        elif self.cycle.more_body and not self.cycle.response_started:
            self._timer = self.loop.call_later(BODY_GRACE_S, self._close_unanswered, self.cycle)

    def _close_unanswered(self, cycle: object) -> None:
        if self.cycle is cycle and not self.cycle.response_started:
            self.transport.close()

    def on_response_complete(self) -> None:
        self._arm()  # first: a pipelined request's head, handled next, starts a new cycle
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class `uvicorn.Config(http=…)` takes, with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
