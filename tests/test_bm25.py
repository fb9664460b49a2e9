"""BM25 in Qdrant (our term weights x Qdrant's IDF modifier) against rank-bm25."""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from chunking.types import Chunk
from index.bm25.encoder import Bm25Encoder, term_index
from index.contracts import Bm25Params, CollectionSpec, IndexedPoint, SearchRequest, SparseVector
from index.store.embedded import EdgeVectorStore
from tests.conftest import examples

CORPUS = [
    "The pump moves water from the well into the tank.",
    "Valves control the flow of water through the pipes of the pump system.",
    "A centrifugal pump uses an impeller to move fluid.",
    "Pipes and valves need regular inspection for leaks.",
    "The tank stores water for the house and the garden.",
    "Solar panels provide power to the pump during the day.",
    "Batteries store solar power for use at night.",
    "An inverter converts battery power into household current.",
    "The garden is watered every morning with water from the tank.",
    "Leaks in the pipes waste water and reduce pressure.",
    "Pressure gauges show the pressure in the pipes and the tank.",
    "The impeller of the pump wears out after years of use.",
    "Regular maintenance keeps the pump and the valves working.",
    "Cold weather can freeze water in exposed pipes.",
    "Insulation protects pipes from freezing in winter.",
    "Rain water can be collected from the roof into the tank.",
]
QUERIES = [
    "pump water",
    "pipes leaks pressure",
    "solar power battery",
    "tank garden water",
    "impeller wear",
    "freezing pipes in winter",
]


class LuceneIdfBM25(BM25Okapi):  # type: ignore[misc]  # rank-bm25 ships no types
    """rank-bm25's Okapi BM25 with the IDF Qdrant (and Lucene) use: ln(1 + (N-n+.5)/(n+.5))."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        self.idf = {
            word: math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))
            for word, freq in nd.items()
        }


def test_term_indices_are_stable_unsigned_32_bit() -> None:
    assert term_index("pump") == term_index("pump")
    assert 0 <= term_index("pump") < 2**32


# Golden values: every stored BM25 vector is indexed by these; a different hash (or encoding)
# makes every query miss every document already indexed. CRC-32 (IEEE 802.3, as zlib) of the
# term's UTF-8 bytes; "123456789" -> 0xCBF43926 is the standard CRC-32 check value.
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("123456789", 0xCBF43926),
        ("pump", 0x9817B1ED),
        ("water", 0xFB3314DA),
        ("run", 0x5076A4C0),
        ("naïv", 1621815905),
        ("café", 2561491637),
        ("", 0),
    ],
)
def test_term_indices_have_their_pinned_values(term: str, expected: int) -> None:
    assert term_index(term) == expected


def test_document_and_query_vectors_have_their_pinned_indices_and_weights() -> None:
    encoder = Bm25Encoder(Bm25Params(avg_doc_length=10))  # k1 1.2, b 0.75
    document = encoder.encode_document("The pumps are running the pump")
    # Tokens pump, run, pump: length 3, so tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * 3 / 10)).
    assert document.indices == [0x5076A4C0, 0x9817B1ED]  # run, pump: sorted by index
    assert document.values == pytest.approx([2.2 / 1.57, 4.4 / 2.57], rel=1e-12)
    query = Bm25Encoder(Bm25Params()).encode_query("Naïve café running")
    assert query.indices == [0x5076A4C0, 1621815905, 2561491637]  # run, naïv, café
    assert query.values == [1.0, 1.0, 1.0]
    repeated = Bm25Encoder(Bm25Params()).encode_query("pump runs; the pumps, pumping")
    assert repeated.indices == [0x5076A4C0, 0x9817B1ED]  # run x1, pump x3
    assert repeated.values == [1.0, 3.0]


def test_tokenizer_stems_and_drops_stop_words() -> None:
    encoder = Bm25Encoder(Bm25Params())
    assert encoder.tokenize("The pumps are running") == ["pump", "run"]


def _mean_length(encoder: Bm25Encoder, texts: list[str]) -> float:
    return sum(len(encoder.tokenize(t)) for t in texts) / len(texts)


@pytest.fixture
def bm25_index(tmp_path: Path) -> tuple[EdgeVectorStore, Bm25Encoder]:
    probe = Bm25Encoder(Bm25Params())
    params = Bm25Params(avg_doc_length=_mean_length(probe, CORPUS))
    encoder = Bm25Encoder(params)
    store = EdgeVectorStore(tmp_path)
    store.create_collection(CollectionSpec("t__v1", "none", 4, params))
    rng = np.random.default_rng(0)
    store.upsert(
        "t__v1",
        [
            IndexedPoint(
                str(uuid.UUID(int=i)),
                rng.random(4).astype(np.float32),
                encoder.encode_document(text),
                {"i": i},
            )
            for i, text in enumerate(CORPUS)
        ],
    )
    return store, encoder


@pytest.mark.parametrize("query", QUERIES)
def test_qdrant_bm25_matches_rank_bm25(bm25_index, query: str) -> None:  # type: ignore[no-untyped-def]
    store, encoder = bm25_index
    reference = LuceneIdfBM25(
        [encoder.tokenize(t) for t in CORPUS], k1=encoder.params.k1, b=encoder.params.b
    )
    expected = reference.get_scores(encoder.tokenize(query))
    request = SearchRequest(
        mode="bm25",
        limit=len(CORPUS),
        candidate_pool=len(CORPUS),
        sparse=encoder.encode_query(query),
    )
    hits = store.search("t__v1", request).hits
    got = {int(uuid.UUID(h.id).int): h.score for h in hits}
    for i, score in enumerate(expected):
        assert got.get(i, 0.0) == pytest.approx(score, rel=1e-4, abs=1e-5), CORPUS[i]
    # The order Qdrant returns is a valid ranking under the reference (ties in any order).
    reference_in_hit_order = [expected[int(uuid.UUID(h.id).int)] for h in hits]
    assert all(a >= b - 1e-5 for a, b in itertools.pairwise(reference_in_hit_order))
    assert len([h for h in hits if h.score > 0]) == int((expected > 0).sum())


# Random queries, scored by Qdrant (our vectors, its IDF) against two reference implementations.
VOCABULARY = sorted({w for text in CORPUS for w in text.lower().strip(".").split()})
STOP_WORDS = ["the", "of", "and", "a", "is", "in", "to"]
UNKNOWN = ["zeppelin", "quasar", "xylophone"]


@pytest.fixture(scope="module")
def shared_bm25_index(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EdgeVectorStore, Bm25Encoder]]:
    probe = Bm25Encoder(Bm25Params())
    params = Bm25Params(avg_doc_length=_mean_length(probe, CORPUS))
    encoder = Bm25Encoder(params)
    store = EdgeVectorStore(tmp_path_factory.mktemp("bm25"))
    store.create_collection(CollectionSpec("t__v1", "none", 4, params))
    store.upsert(
        "t__v1",
        [
            IndexedPoint(
                str(uuid.UUID(int=i)),
                np.full(4, 0.5, dtype=np.float32),
                encoder.encode_document(text),
                {"i": i},
            )
            for i, text in enumerate(CORPUS)
        ],
    )
    yield store, encoder
    store.close()


def _qdrant_scores(store: EdgeVectorStore, encoder: Bm25Encoder, query: str) -> list[float]:
    sparse = encoder.encode_query(query)
    if not sparse.indices:
        return [0.0] * len(CORPUS)
    request = SearchRequest("bm25", len(CORPUS), len(CORPUS), sparse=sparse)
    got = {int(uuid.UUID(h.id).int): h.score for h in store.search("t__v1", request).hits}
    return [got.get(i, 0.0) for i in range(len(CORPUS))]


@settings(
    max_examples=examples(80, 20), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    words=st.lists(st.sampled_from(VOCABULARY + STOP_WORDS + UNKNOWN), min_size=1, max_size=60).map(
        lambda ws: ws + ws[: len(ws) // 2]
    )  # every query repeats some of its terms
)
def test_random_queries_score_as_rank_bm25_and_bm25s_do(
    shared_bm25_index: tuple[EdgeVectorStore, Bm25Encoder], words: list[str]
) -> None:
    """Repeated terms, stop words only, unknown terms, very long queries: the scores equal
    rank-bm25's (Lucene IDF) and bm25s's Lucene variant, which leaves out the constant
    factor k1 + 1."""
    import bm25s

    store, encoder = shared_bm25_index
    query = " ".join(words)
    tokens = encoder.tokenize(query)
    corpus_tokens = [encoder.tokenize(t) for t in CORPUS]
    ours = _qdrant_scores(store, encoder, query)
    okapi = LuceneIdfBM25(corpus_tokens, k1=encoder.params.k1, b=encoder.params.b)
    assert ours == pytest.approx(list(okapi.get_scores(tokens)), rel=1e-4, abs=1e-5)
    lucene = bm25s.BM25(k1=encoder.params.k1, b=encoder.params.b, method="lucene")
    lucene.index(corpus_tokens, show_progress=False)
    known = [t for t in tokens if any(t in doc for doc in corpus_tokens)]
    expected = lucene.get_scores(known) * (encoder.params.k1 + 1) if known else np.zeros(16)
    assert ours == pytest.approx(list(expected), rel=1e-4, abs=1e-5)


def _chunk(text: str, before: list[str], after: list[str]) -> Chunk:
    return Chunk("c", "d", "v", 0, text, "file:///d", "", text_before=before, text_after=after)


@settings(max_examples=examples(60, 15), deadline=None)
@given(
    texts=st.lists(st.sampled_from(CORPUS), min_size=1, max_size=5),
    reach=st.integers(0, 2),
    weight=st.sampled_from([0.5, 1.0]),
)
def test_a_chunk_vector_counts_its_neighbours_terms_at_their_weight(
    texts: list[str], reach: int, weight: float
) -> None:
    """Weight 1 is BM25 of the chunk and its neighbours as one text; weight 1/2 is, up to a
    constant factor, BM25 of the chunk written twice and its neighbours once, with k1 and the
    average length doubled (counts and lengths all halve)."""
    own, before, after = texts[0], texts[1:3], texts[3:5]
    params = Bm25Params(avg_doc_length=12.0, neighbours=reach, neighbour_weight=weight)
    [vector] = Bm25Encoder(params).encode_chunks([_chunk(own, before, after)])
    near = [*before[:reach], *after[:reach]]
    if weight == 1.0:
        expected = Bm25Encoder(params).encode_document(" ".join([own, *near]))
        scale = 1.0
    else:
        doubled = Bm25Params(k1=2 * params.k1, avg_doc_length=24.0)
        expected = Bm25Encoder(doubled).encode_document(" ".join([own, own, *near]))
        scale = (params.k1 + 1) / (2 * params.k1 + 1)
    assert vector.indices == expected.indices
    assert vector.values == pytest.approx([scale * v for v in expected.values], rel=1e-9)


def test_neighbours_let_bm25_find_a_passage_by_what_surrounds_it() -> None:
    impeller = term_index("impel")
    chunks = [
        _chunk("The impeller spins inside the casing.", [], ["Bearings hold the shaft."]),
        _chunk("Bearings hold the shaft.", ["The impeller spins inside the casing."], []),
    ]
    alone = Bm25Encoder(Bm25Params(avg_doc_length=6.0)).encode_chunks(chunks)
    linked = Bm25Encoder(Bm25Params(avg_doc_length=6.0, neighbours=1)).encode_chunks(chunks)

    def weight(vector: SparseVector) -> float:
        return dict(zip(vector.indices, vector.values, strict=True)).get(impeller, 0.0)

    assert weight(alone[1]) == 0.0 < weight(linked[1]) < weight(linked[0])


def test_collections_made_before_neighbours_existed_keep_encoding_chunks_alone() -> None:
    spec = CollectionSpec("old__v1", "m", 4, Bm25Params())
    metadata = spec.to_metadata()
    for key in ("neighbours", "neighbour_weight"):
        del metadata["bm25"][key]
    assert CollectionSpec.from_metadata(metadata).bm25.neighbours == 0


class _OldQueryEncoder(Bm25Encoder):
    """The query side before repeated terms counted: every distinct term weighed 1."""

    def encode_query(self, text: str) -> SparseVector:
        terms = sorted({term_index(t) for t in self.tokenize(text)})
        return SparseVector(indices=terms, values=[1.0] * len(terms))


def test_the_old_query_encoder_disagrees_with_rank_bm25_when_a_query_repeats_a_term(
    shared_bm25_index: tuple[EdgeVectorStore, Bm25Encoder],
) -> None:
    """What the property above guards against: with each term counted once, a verbose query
    that says "pump" three times no longer scores as rank-bm25 (or Lucene) scores it."""
    store, encoder = shared_bm25_index
    query = "pump pump pump water tank"
    okapi = LuceneIdfBM25([encoder.tokenize(t) for t in CORPUS], k1=encoder.params.k1)
    expected = list(okapi.get_scores(encoder.tokenize(query)))
    assert _qdrant_scores(store, encoder, query) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    old = _qdrant_scores(store, _OldQueryEncoder(encoder.params), query)
    assert old != pytest.approx(expected, rel=1e-2)
