"""Strangers holding connections to a server on loopback, as `tests/test_connections.py` and
`bench/hostile_clients.py` play them: slow bodies (a whole head with an invalid key, then one
byte of the body every `byte_every_s`) and idle connections (nothing sent). Each is reopened as
soon as the server closes it, as an attacker would.

Each kind comes from loopback addresses of its own (all of 127.0.0.0/8 is loopback on Linux):
slow bodies from 127.0.1.x, idle connections from 127.0.2.x, so a cap per client address counts
them apart from a normal client on 127.0.0.1.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

SLOW_HEAD = (
    b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer slk_aaaaaaaaaaaa_invalid\r\nContent-Length: 4096\r\n\r\n"
)
RECONNECT_AFTER_S = 0.05


@dataclass
class _Stranger:
    kind: str
    address: str
    sock: socket.socket | None = None
    next_byte: float = 0.0
    closed_at: float = 0.0


@dataclass
class Strangers:
    """>>> with Strangers(port, slow_bodies=16, idle=140) as strangers: ...  # doctest: +SKIP

    `counts`: connections opened, closed by the server, and answers by status line."""

    port: int
    slow_bodies: int = 16
    idle: int = 140
    byte_every_s: float = 5.0
    slow_addresses: int = 16
    idle_addresses: int = 10
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._strangers = [
            _Stranger("slow", f"127.0.1.{n % self.slow_addresses + 1}")
            for n in range(self.slow_bodies)
        ] + [_Stranger("idle", f"127.0.2.{n % self.idle_addresses + 1}") for n in range(self.idle)]
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strangers", daemon=True)

    def __enter__(self) -> Strangers:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for stranger in self._strangers:
            self._close(stranger, by_server=False)
        self._selector.close()

    def held(self) -> int:
        """Connections open now."""
        return sum(stranger.sock is not None for stranger in self._strangers)

    def wait_until_held(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while self.held() < count:
            assert time.monotonic() < deadline, f"{self.held()} of {count} connections open"
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for stranger in self._strangers:
                if stranger.sock is None and now - stranger.closed_at >= RECONNECT_AFTER_S:
                    self._open(stranger, now)
                elif stranger.sock and stranger.kind == "slow" and now >= stranger.next_byte:
                    self._send(stranger, b" ")
                    stranger.next_byte = now + self.byte_every_s
            for key, _ in self._selector.select(timeout=0.05):
                self._read(key.data)

    def _open(self, stranger: _Stranger, now: float) -> None:
        try:
            sock = socket.create_connection(
                ("127.0.0.1", self.port), timeout=2, source_address=(stranger.address, 0)
            )
        except OSError:
            stranger.closed_at = now
            self.counts["connect failed"] += 1
            return
        sock.setblocking(False)
        stranger.sock = sock
        self._selector.register(sock, selectors.EVENT_READ, stranger)
        self.counts["opened"] += 1
        if stranger.kind == "slow":
            self._send(stranger, SLOW_HEAD)
            stranger.next_byte = now + self.byte_every_s

    def _send(self, stranger: _Stranger, data: bytes) -> None:
        assert stranger.sock is not None
        try:
            stranger.sock.send(data)
        except OSError:  # reset or closed by the server
            self._close(stranger, by_server=True)

    def _read(self, stranger: _Stranger) -> None:
        if stranger.sock is None:
            return
        try:
            data = stranger.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 "):
            self.counts[data[9:12].decode()] += 1
        self._close(stranger, by_server=True)  # an answer to a stranger ends its connection

    def _close(self, stranger: _Stranger, by_server: bool) -> None:
        if stranger.sock is None:
            return
        self._selector.unregister(stranger.sock)
        stranger.sock.close()
        stranger.sock, stranger.closed_at = None, time.monotonic()
        if by_server:
            self.counts["closed by the server"] += 1
