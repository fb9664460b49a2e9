"""Strangers cannot take the service down: one deadline for a request's head and body, caps on
connections per client address and in all, keep-alive limits. A real uvicorn server as `sluice
serve` configures it, on loopback, over a real (empty) data dir, with real sockets; strangers
connect from other loopback addresses (`tests/hostile_clients.py`)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from retrieval_api.app import create_app
from tests.hostile_clients import SLOW_HEAD, Strangers
from tests.real_server import serving

QUERY = {"query": "pumps"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _connect(port: int, address: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))


def _is_open(sock: socket.socket, seconds: float = 0.3) -> bool:
    """True if the server neither answered nor closed the connection within `seconds`."""
    sock.settimeout(seconds)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    except OSError:
        pass
    return False


def _answer(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def test_a_client_gets_200s_while_strangers_hold_slow_bodies_and_idle_connections(
    data_dir: Path,
) -> None:
    """The attack of issue 29 with `sluice serve`'s defaults (but a 2 s request deadline, to
    keep the test short): 16 slow bodies that send a byte more often than the deadline, and
    140 idle connections, all reopened as soon as the server closes them. Before, 16 slow
    bodies held every search slot and 128 connections filled uvicorn's `limit_concurrency`:
    every request of a normal client was a 503."""
    settings = Settings(data_dir=data_dir, client_timeout_s=2.0)
    with serving(create_app(settings), settings) as port:
        with Strangers(port, slow_bodies=16, idle=140, byte_every_s=0.5) as strangers:
            strangers.wait_until_held(156)
            statuses: list[int] = []
            until = time.monotonic() + 3 * settings.client_timeout_s
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                while time.monotonic() < until:  # one keep-alive connection
                    statuses.append(client.post("/retrieve", json=QUERY).status_code)
                    time.sleep(0.05)
            for _ in range(10):  # a new connection each
                answer = httpx.post(f"http://127.0.0.1:{port}/retrieve", json=QUERY, timeout=10)
                statuses.append(answer.status_code)
            counts = dict(strangers.counts)
        assert set(statuses) == {200}, (sorted(set(statuses)), counts)
        assert len(statuses) > 20
        assert counts.get("408", 0) >= 16, f"slow bodies are cut at the deadline: {counts}"


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_request_deadline(data_dir: Path) -> None:
    """Each byte comes well within the deadline; the body as a whole does not."""
    settings = Settings(data_dir=data_dir, client_timeout_s=1.5)
    with serving(create_app(settings), settings) as port:
        with _connect(port, "127.0.0.1") as sock:
            started = time.monotonic()
            sock.sendall(SLOW_HEAD)
            sock.settimeout(0.3)
            answer = b""
            while time.monotonic() - started < 10 and not answer:
                sock.sendall(b" ")
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(4096)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower()
        assert 1.4 < elapsed < 3.5, elapsed


def test_an_idle_keep_alive_connection_closes_after_keep_alive_s(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, client_timeout_s=30.0, keep_alive_s=1.0)
    with serving(create_app(settings), settings) as port:
        with _connect(port, "127.0.0.1") as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            started = time.monotonic()
            answer = _answer(sock)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert 0.8 < elapsed < 3, f"closed {elapsed:.1f} s after the answer"


def test_at_a_clients_cap_its_longest_idle_connection_makes_room(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, max_connections_per_client=4)
    with serving(create_app(settings), settings) as port:
        first = [_connect(port, "127.0.0.2") for _ in range(4)]
        time.sleep(0.2)
        fifth = _connect(port, "127.0.0.2")
        time.sleep(0.2)
        assert not _is_open(first[0]), "the longest idle connection of that address is closed"
        assert all(_is_open(sock) for sock in [*first[1:], fifth])
        elsewhere = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert elsewhere.status_code == 200, "other addresses are not counted"
        for sock in [*first, fifth]:
            sock.close()


def test_at_the_total_cap_the_longest_idle_connection_of_any_client_makes_room(
    data_dir: Path,
) -> None:
    settings = Settings(data_dir=data_dir, max_connections=6, max_connections_per_client=3)
    with serving(create_app(settings), settings) as port:
        held = [_connect(port, f"127.0.0.{2 + n // 3}") for n in range(6)]
        time.sleep(0.2)
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert answer.status_code == 200, "a new client gets in"
        assert not _is_open(held[0]), "by closing the connection idle the longest"
        assert all(_is_open(sock) for sock in held[1:])
        for sock in held:
            sock.close()


def test_busy_connections_are_never_closed_for_room_a_new_one_gets_503(data_dir: Path) -> None:
    """Requests in progress (here, bodies on their way) are kept; a new connection beyond the
    caps is answered 503 and closed, from the same address or from any."""
    settings = Settings(
        data_dir=data_dir, client_timeout_s=30.0, max_connections=4, max_connections_per_client=2
    )
    with serving(create_app(settings), settings) as port:
        busy = [_connect(port, f"127.0.0.{2 + n // 2}") for n in range(4)]
        for sock in busy:
            sock.sendall(SLOW_HEAD)
        time.sleep(0.3)
        same_address = _answer(_connect(port, "127.0.0.2"))
        other_address = _answer(_connect(port, "127.0.0.9"))
        for refused in (same_address, other_address):
            assert refused.startswith(b"HTTP/1.1 503"), refused
            assert b"too_many_connections" in refused and b"retry-after: 1" in refused
        assert all(_is_open(sock) for sock in busy)
        for sock in busy:
            sock.close()
