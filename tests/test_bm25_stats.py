"""BM25's avgdl against the corpus now: lengths read back from stored vectors, re-weighting to
another avgdl, the drift `sluice status` reports, and a re-embed that re-weights a drifted index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chunking.ids import chunk_point_id
from chunking.types import Chunk
from composition.components import Components
from config.settings import Settings
from index.bm25.encoder import Bm25Encoder, average_length
from index.bm25.stats import DRIFT_WARNING, AvgdlDrift, document_length, measure_avgdl, reweight
from index.contracts import Bm25Params, CollectionSpec, IndexedPoint, SparseVector
from index.store.embedded import EdgeVectorStore
from index.write.version_sync import sync_version
from tests.conftest import ingest_folder
from tests.test_writer import DIMENSION, StubEmbedder

WORDS = (
    "pump impeller valve seal bearing shaft motor pressure flow pipe tank gauge leak wear "
    "rotor stator casing coupling filter strainer"
).split()
PARAMS = [
    Bm25Params(avg_doc_length=12.0),
    Bm25Params(k1=1.5, b=0.75, avg_doc_length=40.0, neighbours=2, neighbour_weight=0.5),
    Bm25Params(k1=0.9, b=0.3, avg_doc_length=3.0, neighbours=1, neighbour_weight=1.0),
    Bm25Params(k1=2.0, b=0.0, avg_doc_length=20.0),
]


def _chunks(count: int, seed: int, words: tuple[int, int] = (1, 60)) -> list[Chunk]:
    """One document's chunks of random lengths (repeated terms included), linked as the
    chunker links neighbours."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(*words)))) for _ in range(count)]
    return [
        Chunk(
            chunk_id=chunk_point_id(f"doc{seed}", "v", i),
            doc_id=f"doc{seed}",
            doc_version="v",
            ordinal=i,
            text=text,
            uri=f"file:///doc{seed}.md",
            title="",
            text_before=list(reversed(texts[max(0, i - 2) : i])),
            text_after=texts[i + 1 : i + 3],
        )
        for i, text in enumerate(texts)
    ]


@pytest.mark.parametrize("params", PARAMS)
def test_a_vector_gives_back_the_length_it_was_encoded_with(params: Bm25Params) -> None:
    encoder = Bm25Encoder(params)
    chunks = _chunks(40, seed=1)
    for chunk, vector in zip(chunks, encoder.encode_chunks(chunks), strict=True):
        length = sum(encoder.chunk_term_counts(chunk).values())
        assert document_length(vector, params) == pytest.approx(length, rel=1e-9)
        # As a store keeps it: float32 values.
        stored = SparseVector(vector.indices, [float(np.float32(v)) for v in vector.values])
        assert document_length(stored, params) == pytest.approx(length, rel=1e-4)


@pytest.mark.parametrize("params", PARAMS)
def test_reweighting_equals_encoding_with_the_new_avgdl(params: Bm25Params) -> None:
    chunks = _chunks(30, seed=2)
    old = Bm25Encoder(params).encode_chunks(chunks)
    for avgdl in (params.avg_doc_length * 0.4, params.avg_doc_length * 2.5):
        target = replace(params, avg_doc_length=avgdl, k1=params.k1 + 0.3)
        fresh = Bm25Encoder(target).encode_chunks(chunks)
        for before, expected in zip(old, fresh, strict=True):
            got = reweight(before, params, target)
            assert got.indices == expected.indices
            np.testing.assert_allclose(got.values, expected.values, rtol=1e-9)
    with pytest.raises(ValueError, match="re-weight"):
        reweight(old[0], params, replace(params, neighbours=params.neighbours + 1))


def test_drift_past_the_measured_levels_is_stale() -> None:
    low, high = DRIFT_WARNING
    assert not AvgdlDrift(100.0, 100.0 * (1 + low) + 0.1, 10, 10).stale
    assert AvgdlDrift(100.0, 100.0 * (1 + low) - 0.1, 10, 10).stale
    assert not AvgdlDrift(100.0, 100.0 * (1 + high) - 0.1, 10, 10).stale
    assert AvgdlDrift(100.0, 100.0 * (1 + high) + 0.1, 10, 10).stale
    assert AvgdlDrift(112.0, 131.5, 10, 10).to_dict()["drift"] == pytest.approx(0.1741, abs=1e-4)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeVectorStore]:
    edge = EdgeVectorStore(tmp_path_factory.mktemp("qdrant"))
    yield edge
    edge.close()


def _write(store: EdgeVectorStore, name: str, params: Bm25Params, chunks: list[Chunk]) -> None:
    store.create_collection(CollectionSpec(name, StubEmbedder.model_id, DIMENSION, params))
    vectors = Bm25Encoder(params).encode_chunks(chunks)
    store.upsert(
        name,
        [
            IndexedPoint(
                c.chunk_id,
                StubEmbedder.vector(c.text),
                v,
                {
                    "doc_id": c.doc_id,
                    "doc_version": c.doc_version,
                    "text": c.text,
                    "token_count": 9,
                },
            )
            for c, v in zip(chunks, vectors, strict=True)
        ],
    )


def test_measured_drift_and_a_sync_that_reweights(store: EdgeVectorStore) -> None:
    recorded = Bm25Params(k1=1.5, avg_doc_length=30.0, neighbours=2)
    chunks = [c for seed in range(3, 9) for c in _chunks(20, seed)]
    _write(store, "docs__v1", recorded, chunks)
    true_mean = average_length(Bm25Encoder(recorded), chunks)

    whole = measure_avgdl(store, "docs__v1", recorded)
    assert whole is not None and (whole.sampled, whole.points) == (120, 120)
    assert whole.recorded == 30.0 and whole.current == pytest.approx(true_mean, rel=1e-4)
    assert whole.drift == pytest.approx(true_mean / 30.0 - 1, rel=1e-3)

    part = measure_avgdl(store, "docs__v1", recorded, sample=50)
    assert part is not None and (part.sampled, part.points) == (50, 120)
    first = sorted(chunks, key=lambda c: c.chunk_id)[:50]  # the first 50 in id order
    assert part.current == pytest.approx(average_length(Bm25Encoder(recorded), first), rel=1e-4)

    assert measure_avgdl(store, "docs__v1", replace(recorded, b=1.0)) is None

    current = replace(recorded, avg_doc_length=round(whole.current, 2))
    store.create_collection(CollectionSpec("docs__v2", StubEmbedder.model_id, DIMENSION, current))
    stats = sync_version(store, "docs__v1", "docs__v2", StubEmbedder())  # type: ignore[arg-type]
    assert stats.points_written == 120
    fresh = Bm25Encoder(current).encode_chunks(chunks)
    expected = dict(zip([c.chunk_id for c in chunks], fresh, strict=True))
    for page in store.read_points("docs__v2"):
        for point in page:
            assert point.sparse.indices == expected[point.id].indices
            np.testing.assert_allclose(point.sparse.values, expected[point.id].values, rtol=1e-4)
    again = measure_avgdl(store, "docs__v2", current)
    assert again is not None and abs(again.drift) < 1e-4


def _folder(root: Path, name: str, words: int, count: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(words)
    for i in range(count):
        text = " ".join(rng.choice(WORDS, size=words))
        (folder / f"{name}{i}.md").write_text(f"# {name} {i}\n\n{text}\n")
    return folder


def test_status_reports_a_drifted_index_and_a_reembed_reweights_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder
) -> None:  # type: ignore[no-untyped-def]
    """Short documents first (their chunks set avgdl), long ones after: status warns, and a
    re-embed with the same model records the current mean and re-weights every vector to it."""
    from flows.reembed_flow import run_reembed
    from sluice.cli.main import app

    settings = Settings(data_dir=tmp_path / "data", embedding_backend="torch")  # as `embedder`
    cache = Components(settings).embedding_cache(embedder)
    ingest_folder(settings, _folder(tmp_path, "short", 4, 6), embedder, cache, "short")
    ingest_folder(settings, _folder(tmp_path, "long", 120, 6), embedder, cache, "long")

    monkeypatch.setenv("SLUICE_DATA_DIR", str(settings.data_dir))
    shown = CliRunner().invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    avgdl = json.loads(shown.stdout)["indexes"]["docs"]["bm25_avgdl"]
    assert avgdl["drift"] > DRIFT_WARNING[1] and avgdl["stale"], avgdl
    assert (avgdl["sampled"], avgdl["points"]) == (12, 12)
    table = CliRunner().invoke(app, ["status"], terminal_width=200)
    assert f"bm25 avgdl: recorded {avgdl['recorded']:.1f}" in table.stdout
    assert "warning:" in table.stdout and "sluice reembed --model" in table.stdout

    report = run_reembed(settings, embedder.model_id, force=True)
    assert report.outcome == "switched" and report.embedded == 0
    store = Components(settings).store()
    try:
        spec = store.collection_spec("docs__v2")
        assert spec is not None
        assert spec.bm25.avg_doc_length == pytest.approx(avgdl["current"], abs=0.01)
        after = measure_avgdl(store, "docs__v2", spec.bm25)
        assert after is not None and abs(after.drift) < 1e-3, after
    finally:
        store.close()
    quiet = CliRunner().invoke(app, ["status"], terminal_width=200)
    assert "avgdl" not in quiet.stdout and "warning" not in quiet.stdout  # nothing to do
