"""Bounds a client cannot get around: body size and time, request-head time, searches at once,
the Host header, CORS; against a real uvicorn server on loopback where sockets matter."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from config.settings import Settings
from retrieval_api.app import create_app
from retrieval_api.deps import get_searcher
from tests.real_server import serving

LOCAL = "http://localhost"


class SlowSearcher:
    """Holds each search for a while, so requests overlap; returns no index."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def version(self, alias: str) -> None:
        """The first call a search makes: held, then "no index yet" (an empty answer)."""
        time.sleep(self.seconds)
        return None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        max_body_bytes=2048,
        client_timeout_s=1.0,
        max_concurrent_searches=1,
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, int, FastAPI]]:
    """`sluice serve`'s uvicorn settings on a free loopback port."""
    app = create_app(settings)
    app.dependency_overrides[get_searcher] = lambda: SlowSearcher(1.0)
    with serving(app, settings) as port:
        yield f"http://localhost:{port}", port, app


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes the connection (recv returns b"") within `seconds`."""
    sock.settimeout(seconds)
    try:
        while data := sock.recv(4096):
            if b"HTTP/1.1" in data:  # an answer, then the close
                continue
        return True
    except TimeoutError:
        return False


def test_idle_and_slow_header_connections_are_closed(server: tuple[str, int, FastAPI]) -> None:
    _, port, _ = server
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /retrieve HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
    started = time.monotonic()
    assert _closed_within(idle, 5) and _closed_within(slow, 5)
    assert time.monotonic() - started < 4, "closed at the 1 s head deadline, not later"
    idle.close()
    slow.close()


def test_a_body_that_never_finishes_gets_408(server: tuple[str, int, FastAPI]) -> None:
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /retrieve HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"query": '
        )
        sock.settimeout(10)
        answer = b""
        while b"request_timeout" not in answer and (chunk := sock.recv(4096)):
            answer += chunk  # the head and the body may come in two reads
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer


def _burst(url: str, requests: int) -> list[tuple[int, float, httpx.Response]]:
    """`requests` searches sent 0.1 s apart, each held 1 s: (status, seconds, answer)."""
    answers: list[tuple[int, float, httpx.Response]] = []

    def ask() -> None:
        started = time.perf_counter()
        answer = httpx.post(f"{url}/retrieve", json={"query": "pumps"}, timeout=30)
        answers.append((answer.status_code, time.perf_counter() - started, answer))

    threads = [threading.Thread(target=ask) for _ in range(requests)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    return sorted(answers, key=lambda answer: answer[1])


@contextmanager
def _served(settings: Settings, **limits: float) -> Iterator[str]:
    app = create_app(settings.model_copy(update=limits))
    app.dependency_overrides[get_searcher] = lambda: SlowSearcher(1.0)
    with serving(app, settings) as port:
        yield f"http://localhost:{port}"


def test_a_burst_waits_its_turn_in_arrival_order(settings: Settings) -> None:
    with _served(settings, max_queued_searches=2, search_queue_wait_s=5) as url:
        answers = _burst(url, 3)
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert [round(seconds) for _, seconds, _ in answers] == [1, 2, 3]


@pytest.mark.parametrize(
    ("queued", "wait_s"), [(1, 5.0), (0, 5.0), (5, 0.5)], ids=["room-full", "no-room", "wait"]
)
def test_past_the_waiting_room_a_search_gets_503_with_retry_after(
    settings: Settings, queued: int, wait_s: float
) -> None:
    """The room holds `queued` searches for `wait_s` each: one more, or one waiting longer,
    is refused at once with Retry-After, and probes still answer."""
    with _served(settings, max_queued_searches=queued, search_queue_wait_s=wait_s) as url:
        answers = _burst(url, 3)
        statuses = [status for status, _, _ in answers]
        admitted = 1 + queued if wait_s > 1 else 1
        assert sorted(statuses) == sorted([200] * admitted + [503] * (3 - admitted)), statuses
        refused = next(answer for status, _, answer in answers if status == 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        waited = [seconds for status, seconds, _ in answers if status == 503]
        assert max(waited) < (wait_s + 0.5 if queued else 0.5), waited
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_a_body_over_the_limit_gets_413_declared_or_streamed(settings: Settings) -> None:
    big = {"query": "x" * 3000}
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        declared = client.post("/retrieve", json=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
            yield b'{"query": "'
            for _ in range(30):
                yield b"x" * 100
            yield b'"}'

        streamed = client.post(
            "/retrieve", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "body_too_large"


def test_only_allowed_hosts_are_answered(settings: Settings) -> None:
    """On loopback, a page whose domain resolves to 127.0.0.1 (DNS rebinding) gets 400."""
    app = create_app(settings)
    with TestClient(app, base_url="http://attacker.example") as client:
        assert client.get("/health").status_code == 400
    for host in ("localhost", "127.0.0.1"):
        with TestClient(app, base_url=f"http://{host}:8000") as client:
            assert client.get("/health").status_code == 200
    anywhere = create_app(settings.model_copy(update={"api_host": "0.0.0.0"}))
    with TestClient(anywhere, base_url="http://api.example") as client:
        assert client.get("/health").status_code == 200, "keys guard a network address"


def test_cors_is_off_unless_origins_are_configured(settings: Settings) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        answer = client.options("/retrieve", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    allowed = settings.model_copy(update={"cors_origins": ["https://app.example"]})
    with TestClient(create_app(allowed), base_url=LOCAL) as client:
        answer = client.options("/retrieve", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        refused = client.options("/retrieve", headers={**preflight, "Origin": "https://evil"})
        assert refused.status_code == 400


def test_every_answer_carries_a_request_id_the_callers_or_a_new_one(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        given = client.post("/retrieve", json={"query": "x"}, headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = client.post("/retrieve", json={"query": ""})
        assert made.status_code == 422 and len(made.headers["x-request-id"]) == 32
        odd = client.get("/health", headers={"X-Request-ID": "no spaces allowed"})
        assert odd.headers["x-request-id"] != "no spaces allowed"
        refused = client.get("/health", headers={"Host": "evil.example", "X-Request-ID": "r1"})
        assert refused.status_code == 400 and refused.headers["x-request-id"] == "r1"
