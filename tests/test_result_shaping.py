"""What applications ask of /retrieve beyond a flat top-k: documents (group_by), context
(expand), diversity (mmr), thresholds, paging (cursor) and highlights; over a real embedded
index of multi-chunk documents, in-process."""

from __future__ import annotations

import base64
import itertools
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from index.bm25.encoder import Bm25Encoder
from index.contracts import Bm25Params
from retrieval_api.app import create_app
from retrieval_api.cursor import Cursor, CursorCodec
from sluice_client.request import MAX_CANDIDATE_POOL
from tests.conftest import ingest_folder

PUMP = (
    "A centrifugal pump moves water with a spinning impeller. Check the impeller for wear "
    "every spring and replace the seal when it leaks."
)
DOCS = {
    # Near-identical chunks of one page: what MMR and grouping are for.
    "pumps.md": "# Pumps\n\n" + "\n\n".join(f"Note {n}. {PUMP}" for n in range(6)),
    "pump-repair.md": "# Pump repair\n\nWhen a pump impeller wears out, the pump loses "
    "pressure and the water flow drops. Replace the impeller and the seal together.\n\n"
    "## Tools\n\nYou need a spanner, a new seal and a spare impeller.",
    "solar.md": "# Solar power\n\n"
    + "\n\n".join(
        f"Part {n}. Solar panels charge the batteries during the day; an inverter turns "
        "battery power into household current at night."
        for n in range(4)
    ),
    # One long paragraph: the chunker cuts it into windows that overlap.
    "manual.md": "# Manual\n\n"
    + " ".join(
        f"Step {n}: open valve {n}, read the gauge, and write the pressure in the log."
        for n in range(12)
    ),
    "garden.txt": "Garden notes\n\nWater the tomatoes every morning from the rain tank. The "
    "rain tank has a small pump of its own.",
}
QUERY = "pump impeller wear"


@pytest.fixture(scope="module")
def settings(embedder, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), chunk_max_tokens=40, chunk_overlap_tokens=20
    )
    folder = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest_folder(settings, folder, embedder, source_name="docs")
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://localhost") as test_client:
        yield test_client


def retrieve(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/retrieve", json={"query": QUERY, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_group_by_doc_returns_the_best_documents_each_with_its_best_chunks(
    client: TestClient,
) -> None:
    flat = retrieve(client, top_k=100)["hits"]
    answer = retrieve(client, top_k=3, group_by="doc", group_size=2)
    groups = answer["groups"]
    assert len(groups) == 3
    assert len({g["doc_id"] for g in groups}) == 3
    # The documents in the order of their best chunk in the final (fused) ranking...
    first_seen = list(dict.fromkeys(hit["doc_id"] for hit in flat))
    assert [g["doc_id"] for g in groups] == first_seen[:3]
    for group in groups:
        chunks = [hit for hit in flat if hit["doc_id"] == group["doc_id"]]
        # ...each scored by its best chunk, with its best chunks in order.
        assert group["score"] == chunks[0]["score"]
        assert [h["chunk_id"] for h in group["hits"]] == [h["chunk_id"] for h in chunks[:2]]
        assert group["uri"] == chunks[0]["uri"]
    assert [h["chunk_id"] for h in answer["hits"]] == [
        h["chunk_id"] for g in groups for h in g["hits"]
    ]
    assert len(groups[0]["hits"]) == 2, "pumps.md has six chunks: two are shown"


def test_expand_merges_the_neighbouring_chunks_in_order_without_the_overlap(
    client: TestClient,
) -> None:
    hits = retrieve(client, top_k=20, expand={"before": 1, "after": 1})["hits"]
    chunks = {
        h["chunk_id"]: h for h in retrieve(client, top_k=100)["hits"]
    }  # every chunk of the corpus
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks.values():
        by_doc.setdefault(chunk["doc_id"], []).append(chunk)
    overlapping = 0
    for hit in hits:
        siblings = sorted(by_doc[hit["doc_id"]], key=lambda c: c["char_start"])
        place = next(i for i, c in enumerate(siblings) if c["chunk_id"] == hit["chunk_id"])
        window = siblings[max(0, place - 1) : place + 2]
        # The document's text over the window's span: each chunk at its own offset, the
        # overlap once, the whitespace between chunks that do not touch restored.
        start, end = window[0]["char_start"], max(c["char_end"] for c in window)
        context = hit["context_text"]
        assert len(context) == end - start
        for chunk in window:
            offset = chunk["char_start"] - start
            assert context[offset : offset + len(chunk["text"])] == chunk["text"]
        pairs = itertools.pairwise(window)
        overlapping += any(a["char_end"] > b["char_start"] for a, b in pairs)
    assert overlapping >= 2, "the manual's windows overlap"


def test_expand_stays_within_the_token_budget_and_can_take_the_section(
    client: TestClient,
) -> None:
    tight = retrieve(client, top_k=3, expand={"before": 3, "after": 3, "max_tokens": 1})["hits"]
    assert all(hit["context_text"] == hit["text"] for hit in tight), "the hit alone fits"
    plain = retrieve(client, top_k=30)["hits"]
    section = retrieve(client, top_k=30, expand={"section": True, "max_tokens": 8192})["hits"]
    for hit in section:
        same = [
            c for c in plain if c["doc_id"] == hit["doc_id"] and c["headings"] == hit["headings"]
        ]
        for chunk in same:
            assert chunk["text"] in hit["context_text"]
    tools = next(h for h in section if h["headings"][-1:] == ["Tools"])
    assert "loses pressure" not in tools["context_text"], "another section is left out"


def test_mmr_diversifies_the_top_and_zero_keeps_the_ranking(client: TestClient) -> None:
    plain = retrieve(client, top_k=5)["hits"]
    same = retrieve(client, top_k=5, mmr={"diversity": 0.0})["hits"]
    assert [h["chunk_id"] for h in same] == [h["chunk_id"] for h in plain]
    diverse = retrieve(client, top_k=5, mmr={"diversity": 0.7, "candidates": 30})["hits"]
    assert len({h["doc_id"] for h in diverse}) > len({h["doc_id"] for h in plain})
    assert diverse[0]["chunk_id"] == plain[0]["chunk_id"], "the most relevant comes first"
    assert all(h["scores"]["mmr"] is not None for h in diverse)
    assert all(h["scores"]["fused"] is not None for h in diverse), "stage scores kept"
    capped = retrieve(client, top_k=10, mmr={"diversity": 0.5, "candidates": 4})["hits"]
    plain = retrieve(client, top_k=10)["hits"]
    assert [h["scores"]["mmr"] is not None for h in capped] == [True] * 4 + [False] * 6
    assert {h["chunk_id"] for h in capped[:4]} == {h["chunk_id"] for h in plain[:4]}
    assert [h["chunk_id"] for h in capped[4:]] == [h["chunk_id"] for h in plain[4:]], (
        "below its candidates, the ranking as it was"
    )


def test_min_score_and_min_relative_score_cut_the_ranking(client: TestClient) -> None:
    hits = retrieve(client, top_k=30)["hits"]
    assert hits[0]["relative_score"] == 1.0
    assert all(0 <= h["relative_score"] <= 1 for h in hits)
    middle = hits[len(hits) // 2]
    above = retrieve(client, top_k=30, min_score=middle["score"])["hits"]
    assert above and all(h["score"] >= middle["score"] for h in above)
    assert len(above) < len(hits)
    relative = retrieve(client, top_k=30, min_relative_score=0.9)["hits"]
    assert relative and all(h["relative_score"] >= 0.9 for h in relative)
    assert len(relative) == sum(h["relative_score"] >= 0.9 for h in hits)


def _pages(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = retrieve(client, **body, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_a_cursor_pages_through_the_ranking_without_duplicates_or_gaps(
    client: TestClient, mode: str
) -> None:
    whole = [h["chunk_id"] for h in retrieve(client, mode=mode, top_k=100)["hits"]]
    pages = _pages(client, mode=mode, top_k=3)
    paged = [h["chunk_id"] for page in pages for h in page["hits"]]
    assert paged == whole
    assert len(whole) > 3 and len(pages) == -(-len(whole) // 3)
    ranks = [h["rank"] for page in pages for h in page["hits"]]
    assert ranks == list(range(1, len(whole) + 1))


def test_paging_stops_at_the_candidate_pool_the_first_page_ran_with(client: TestClient) -> None:
    """The maximum depth: past the pool the ranking would change with the depth."""
    whole = retrieve(client, top_k=5, candidate_pool=5)["hits"]
    pages = _pages(client, top_k=3, candidate_pool=5)
    assert [h["chunk_id"] for page in pages for h in page["hits"]] == [h["chunk_id"] for h in whole]
    assert [len(page["hits"]) for page in pages] == [3, 2]
    assert pages[0]["options"]["candidate_pool"] == 5


def test_a_cursor_pages_through_a_diversified_ranking(client: TestClient) -> None:
    mmr = {"diversity": 0.6, "candidates": 8}
    whole = [h["chunk_id"] for h in retrieve(client, top_k=100, mmr=mmr)["hits"]]
    pages = _pages(client, top_k=3, mmr=mmr)
    assert [h["chunk_id"] for page in pages for h in page["hits"]] == whole


def test_a_cursor_pages_through_groups(client: TestClient) -> None:
    whole = [g["doc_id"] for g in retrieve(client, top_k=50, group_by="doc")["groups"]]
    pages = _pages(client, top_k=1, group_by="doc")
    assert [g["doc_id"] for page in pages for g in page["groups"]] == whole
    assert len(whole) == len(DOCS)


def test_a_cursor_for_another_request_or_a_forged_one_is_a_400(client: TestClient) -> None:
    cursor = retrieve(client, top_k=2)["next_cursor"]
    other = client.post("/retrieve", json={"query": "solar", "top_k": 2, "cursor": cursor})
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "invalid_cursor"
    assert "different request" in other.json()["error"]["message"]
    forged = client.post("/retrieve", json={"query": QUERY, "cursor": cursor[:-4] + "AAAA"})
    assert forged.status_code == 400
    assert forged.json()["error"]["message"].startswith("cursor: not a cursor this server")
    resized = client.post("/retrieve", json={"query": QUERY, "top_k": 5, "cursor": cursor})
    assert resized.status_code == 200, "the page size may change"


def _payload(cursor: str) -> dict[str, Any]:
    payload = cursor.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def _unsigned(fields: dict[str, Any]) -> str:
    """A payload as the server writes one, without the server's key: a forger's cursor."""
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def test_a_forged_cursor_claiming_a_deeper_ranking_is_refused(client: TestClient) -> None:
    """Unsigned cursors (base64 JSON) let a client ask for a 100,000-deep ranking: ~28 times
    the work of a page. Today's refuse a changed payload, whatever signature comes with it."""
    cursor = retrieve(client, top_k=2)["next_cursor"]
    deeper = _unsigned({**_payload(cursor), "pool": 100_000})
    for token in (
        f"{deeper}.{cursor.split('.')[1]}",  # the real page's signature
        f"{deeper}.{'A' * 43}",
        deeper,  # no signature at all: the schema's pattern refuses it
    ):
        answer = client.post("/retrieve", json={"query": QUERY, "top_k": 2, "cursor": token})
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["error"]["message"].startswith(("cursor", "body.cursor"))
    assert retrieve(client, top_k=2, cursor=cursor)["hits"], "the real cursor still works"


def test_a_signed_cursor_deeper_than_the_servers_limit_is_refused(
    client: TestClient, settings: Settings
) -> None:
    """Even a cursor with a valid signature (a leaked key, or a limit lowered since) is held to
    the server's own maximum candidate pool. The key is the data dir's, made once, 0600."""
    cursor = retrieve(client, top_k=2)["next_cursor"]
    assert stat.S_IMODE(settings.cursor_secret_path.stat().st_mode) == 0o600
    codec = CursorCodec(settings.cursor_secret_path.read_text().encode(), MAX_CANDIDATE_POOL)
    deep = codec.encode(Cursor(**{**_payload(cursor), "pool": MAX_CANDIDATE_POOL + 1}))
    answer = client.post("/retrieve", json={"query": QUERY, "top_k": 2, "cursor": deep})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_cursor"
    assert "limit (1000)" in answer.json()["error"]["message"]
    deepest = codec.encode(Cursor(**{**_payload(cursor), "pool": MAX_CANDIDATE_POOL}))
    assert retrieve(client, top_k=2, cursor=deepest)["hits"], "the limit itself is allowed"


def test_a_cursor_that_outlived_its_index_version_is_a_410(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", chunk_max_tokens=40)
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest_folder(settings, folder, embedder, source_name="docs")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        cursor = retrieve(client, top_k=2)["next_cursor"]
        assert retrieve(client, top_k=2, cursor=cursor)["hits"]
        (folder / "new.md").write_text("# New\n\nA new pump manual about the impeller.")
        ingest_folder(settings, folder, embedder, source_name="docs")
        stale = client.post("/retrieve", json={"query": QUERY, "top_k": 2, "cursor": cursor})
        assert stale.status_code == 410, stale.text
        assert stale.json()["error"]["code"] == "cursor_expired"
        assert "changed" in stale.json()["error"]["message"]


def test_highlights_mark_the_query_terms_as_bm25_matches_them(client: TestClient) -> None:
    encoder = Bm25Encoder(Bm25Params(avg_doc_length=1))
    wanted = set(encoder.tokenize(QUERY))
    for hit in retrieve(client, top_k=10)["hits"]:
        text = hit["text"]
        marked = [text[start:end] for start, end in hit["highlights"]]
        assert all(encoder.tokenize(word) == [term] for word, term in _pairs(marked, encoder))
        assert {encoder.tokenize(word)[0] for word in marked} <= wanted
        # Every occurrence is marked: no query term is left in the unmarked text.
        rest = "".join(
            " " if any(s <= i < e for s, e in hit["highlights"]) else ch
            for i, ch in enumerate(text)
        )
        assert not set(encoder.tokenize(rest)) & wanted
    first = retrieve(client, top_k=1)["hits"][0]
    assert first["highlights"], "the best hit matches some query term"


@pytest.mark.parametrize("mode", ["bm25", "hybrid", "dense"])
@pytest.mark.parametrize("query", ["repair tools", "pump repair", "inverter night", QUERY])
def test_a_hit_without_highlights_says_why(client: TestClient, mode: str, query: str) -> None:
    from index.search.shaping import HIGHLIGHT_NOTES

    encoder = Bm25Encoder(Bm25Params(avg_doc_length=1))
    wanted = set(encoder.tokenize(query))
    body = {"query": query, "mode": mode, "top_k": 10, "expand": {"before": 1, "after": 1}}
    for hit in retrieve(client, **body)["hits"]:
        around = hit["context_text"]
        assert [around[a:b] for a, b in hit["context_highlights"]] == [
            around[a:b] for _, a, b in encoder.term_spans(around) if _ in wanted
        ]
        if hit["highlights"]:
            assert hit["highlights_note"] is None
            continue
        note = hit["highlights_note"]
        labelled = " ".join([hit["title"], *hit["headings"]])
        if note == HIGHLIGHT_NOTES["context"]:
            assert set(encoder.tokenize(labelled)) & wanted, hit
        elif note == HIGHLIGHT_NOTES["context_text"]:
            assert hit["context_highlights"], hit
        else:
            assert note == HIGHLIGHT_NOTES["none"], hit
            assert mode != "bm25", "a BM25 hit matched some term somewhere"
            assert not hit["context_highlights"] and not set(encoder.tokenize(labelled)) & wanted


def _pairs(words: list[str], encoder: Bm25Encoder) -> list[tuple[str, str]]:
    return [(word, encoder.tokenize(word)[0]) for word in words]


@given(st.text(max_size=200))
def test_term_spans_are_the_tokens_bm25_indexes(text: str) -> None:
    encoder = Bm25Encoder(Bm25Params(avg_doc_length=1))
    spans = encoder.term_spans(text)
    assert [term for term, _, _ in spans] == encoder.tokenize(text)
    assert all(encoder.tokenize(text[start:end]) == [term] for term, start, end in spans)


def test_every_option_is_in_the_schema_and_they_combine(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schema["RetrieveRequest"]["properties"]
    for name in ("group_by", "expand", "mmr", "min_score", "min_relative_score", "cursor"):
        assert name in fields
    assert {"highlights", "context_text", "relative_score"} <= set(schema["Hit"]["properties"])
    combined = retrieve(
        client,
        top_k=2,
        group_by="doc",
        group_size=2,
        expand={"before": 1, "after": 1},
        mmr={"diversity": 0.5},
        min_relative_score=0.1,
    )
    pages = [combined]
    while pages[-1]["next_cursor"]:
        pages.append(
            retrieve(
                client,
                top_k=2,
                group_by="doc",
                group_size=2,
                expand={"before": 1, "after": 1},
                mmr={"diversity": 0.5},
                min_relative_score=0.1,
                cursor=pages[-1]["next_cursor"],
            )
        )
    docs = [g["doc_id"] for page in pages for g in page["groups"]]
    assert len(docs) == len(set(docs)) >= 3
    for page in pages:
        for hit in page["hits"]:
            assert hit["context_text"] and hit["scores"]["mmr"] is not None
            assert hit["relative_score"] >= 0.1
