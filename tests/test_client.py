"""sluice_client.client against a real `sluice serve` (and, for what the server cannot be made to
answer on cue, a scripted HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from retrieval_api.keys import KeyStore
from sluice_client.client import (
    AsyncSluiceClient,
    SluiceAPIError,
    SluiceClient,
    SluiceConnectionError,
    request_body,
    retry_after_s,
    retry_delay,
)
from sluice_client.request import Filters, IntegerRange, MetadataFilters
from tests.conftest import ServedCorpus, free_port

PUMP = "how often does the pump impeller need replacing"


def test_retrieve_returns_the_matching_document_first(served_corpus: ServedCorpus) -> None:
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        answer = client.retrieve(PUMP, top_k=2)
    assert answer.hits[0].uri.endswith("pump.md") and "impeller" in answer.hits[0].text
    assert len(answer.hits) == 2 and answer.index is not None


def test_async_retrieve_returns_the_matching_document_first(served_corpus: ServedCorpus) -> None:
    async def ask() -> list[str]:
        async with AsyncSluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as c:
            answers = await asyncio.gather(c.retrieve(PUMP), c.retrieve("revoke the old key"))
        return [answer.hits[0].uri.rsplit("/", 1)[1] for answer in answers]

    assert asyncio.run(ask()) == ["pump.md", "keys.md"]


def test_feedback_on_an_answer_is_stored_once_per_event(served_corpus: ServedCorpus) -> None:
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        answer = client.retrieve(PUMP, top_k=2)
        assert answer.request_id
        click = {"chunk_id": answer.hits[1].chunk_id, "label": "clicked", "rank": 2}
        first = client.feedback(answer.request_id, [click], event_id="ev-1")
        again = client.feedback(answer.request_id, [click], event_id="ev-1")
        fresh = client.feedback(answer.request_id, [click])  # a new event id of its own
        with pytest.raises(SluiceAPIError) as stranger:
            client.feedback(answer.request_id, [{"chunk_id": "no-such-hit", "label": "relevant"}])
    assert (first.items, first.duplicate) == (1, False)
    assert (again.items, again.duplicate) == (0, True)
    assert not fresh.duplicate and fresh.event_id not in ("", "ev-1")
    assert stranger.value.status == 422 and "no-such-hit" in str(stranger.value)

    async def told() -> bool:
        async with AsyncSluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as c:
            later = await c.retrieve(PUMP)
            receipt = await c.feedback(
                str(later.request_id), [{"doc_id": later.hits[0].doc_id, "label": "relevant"}]
            )
        return receipt.duplicate

    assert asyncio.run(told()) is False


def test_options_are_sent_as_request_fields(served_corpus: ServedCorpus) -> None:
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        first = client.retrieve(PUMP, mode="bm25", top_k=1, rerank=None)
        assert first.mode == "bm25" and len(first.hits) == 1
        valves = client.retrieve("valve", mode="dense", top_k=3).hits[0]
        first_chunks = MetadataFilters(ordinal=IntegerRange(gte=0, lt=1))
        only = client.retrieve(
            PUMP, top_k=3, filters=Filters(doc_ids=[valves.doc_id], metadata=first_chunks)
        )
    assert [hit.doc_id for hit in only.hits] == [valves.doc_id], "the API's Filters, as set"


def test_pages_follow_the_cursor_through_one_ranking(served_corpus: ServedCorpus) -> None:
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        whole = [hit.chunk_id for hit in client.retrieve(PUMP, top_k=20).hits]
        pages = list(client.pages(PUMP, top_k=2))
    assert [hit.chunk_id for page in pages for hit in page.hits] == whole
    assert pages[-1].next_cursor is None and len(pages) >= 3


def test_the_key_is_sent_and_a_missing_one_is_the_servers_401(
    served_corpus: ServedCorpus,
) -> None:
    with SluiceClient(served_corpus.url) as client, pytest.raises(SluiceAPIError) as refused:
        client.retrieve(PUMP)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert "API key is required" in refused.value.message and refused.value.request_id
    acme, _ = KeyStore(served_corpus.settings.api_keys_path).create(["acme"])
    with SluiceClient(served_corpus.url, api_key=acme) as client:
        hits = client.retrieve(PUMP).hits
    assert hits and not any(hit.uri.startswith("file:") for hit in hits), "a tenant's view"


def test_an_invalid_request_raises_with_the_servers_message(served_corpus: ServedCorpus) -> None:
    async def ask_async() -> None:
        async with AsyncSluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as c:
            await c.retrieve(PUMP, top_k=0)

    started = time.monotonic()
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        with pytest.raises(SluiceAPIError) as invalid:
            client.retrieve(PUMP, top_k=0)
        with pytest.raises(SluiceAPIError) as invalid_async:
            asyncio.run(ask_async())
    for error in (invalid.value, invalid_async.value):
        assert (error.status, error.code) == (422, "invalid_request")
        assert error.message.startswith("top_k:") and error.details
    assert time.monotonic() - started < 5, "a 422 is not retried"


def test_a_429_is_retried_after_the_servers_retry_after(served_corpus: ServedCorpus) -> None:
    """A key of one request per 2 s: the second request within them is refused with
    Retry-After, and one retry that waits that long gets through."""
    limited, _ = KeyStore(served_corpus.settings.api_keys_path).create(
        ["acme"], rate_per_s=0.5, burst=1
    )
    with SluiceClient(served_corpus.url, api_key=limited, retries=0) as client:
        client.retrieve(PUMP)
        with pytest.raises(SluiceAPIError) as limited_error:
            client.retrieve(PUMP)
    retry_after = limited_error.value.retry_after
    assert limited_error.value.status == 429 and limited_error.value.code == "rate_limited"
    assert retry_after is not None and retry_after >= 1

    with SluiceClient(served_corpus.url, api_key=limited, retries=1) as client:
        started = time.monotonic()
        answer = client.retrieve(PUMP)
        elapsed = time.monotonic() - started
    assert answer.hits and elapsed >= retry_after - 0.05

    async def capped() -> float:
        async with AsyncSluiceClient(
            served_corpus.url, api_key=limited, retries=1, max_retry_after=0.1
        ) as c:
            started = time.monotonic()
            with pytest.raises(SluiceAPIError) as still_limited:
                await c.retrieve(PUMP)
            assert still_limited.value.status == 429
            return time.monotonic() - started

    assert asyncio.run(capped()) < 1, "waits no longer than max_retry_after, then gives up"


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next of `script`: (status, headers, body)."""

    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[tuple[float, dict[str, object]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.seen.append((time.monotonic(), json.loads(self.rfile.read(length))))
        status, headers, body = self.script.pop(0)
        self.send_response(status)
        for name, value in {"content-length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[Scripted]]]:
    Scripted.script, Scripted.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Scripted
    server.shutdown()
    server.server_close()


EMPTY = json.dumps(
    {"query": "q", "mode": "hybrid", "hits": [], "index": None, "timings_ms": {}}
).encode()


def test_a_503_without_retry_after_backs_off_and_a_proxy_error_is_not_retried(
    scripted: tuple[str, type[Scripted]],
) -> None:
    url, handler = scripted
    busy = json.dumps({"error": {"code": "overloaded", "message": "busy"}}).encode()
    handler.script = [(503, {}, busy), (503, {}, busy), (200, {}, EMPTY)]
    with SluiceClient(url, retries=2) as client:
        assert client.retrieve("q", top_k=3, mode=None).hits == []
    (first, body), (second, _), (third, _) = handler.seen
    assert body == {"query": "q", "top_k": 3}, "options as they are; None left out"
    assert 0.25 <= second - first < 1 and 0.5 <= third - second < 2, "backoff, jittered"

    handler.script = [(502, {"content-type": "text/html"}, b"<h1>Bad Gateway</h1>")]
    with SluiceClient(url, retries=2) as client, pytest.raises(SluiceAPIError) as proxied:
        client.retrieve("q")
    assert (proxied.value.status, proxied.value.code) == (502, "http_error")
    assert "Bad Gateway" in proxied.value.message and len(handler.seen) == 4


def test_an_unreachable_server_is_retried_then_raises() -> None:
    started = time.monotonic()
    with (
        SluiceClient(f"http://127.0.0.1:{free_port()}", retries=2) as client,
        pytest.raises(SluiceConnectionError, match=r"127\.0\.0\.1"),
    ):
        client.retrieve("q")
    assert time.monotonic() - started >= 0.25 + 0.5, "two retries, each after its backoff"


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_s({"retry-after": "2"}) == 2
    assert retry_after_s({"retry-after": format_datetime(now + timedelta(seconds=7))}, now) == 7
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_retry_delay_honours_the_server_within_the_cap_else_backs_off_with_jitter() -> None:
    assert retry_delay(0, 2.0, cap_s=30) == 2.0
    assert retry_delay(5, 120.0, cap_s=30) == 30
    rng = random.Random(1)
    for attempt in range(8):
        backoff = min(0.5 * 2**attempt, 30)
        delays = {retry_delay(attempt, None, 30, rng) for _ in range(20)}
        assert all(backoff / 2 <= d <= backoff for d in delays) and len(delays) > 1


def test_request_body_sends_every_option_but_none() -> None:
    body = request_body("q", {"top_k": 2, "group_by": "doc", "cursor": None, "future": [1]})
    assert body == {"query": "q", "top_k": 2, "group_by": "doc", "future": [1]}
