"""Choose the retrieval defaults by leaving one collection out (docs/retrieval-quality.md).

    .venv/bin/python bench/defaults_grid.py          # every collection in ../shared/data/beir
    .venv/bin/python bench/defaults_grid.py --json grid.json

Every collection is chunked as `sluice eval` chunks it; chunk vectors come from the embedding cache
(set SLUICE_DATA_DIR to one that `bench/quality.py` filled), so nothing is re-embedded. Then, per
query, the top `DEPTH_CHUNKS` chunks of exact dense search and of BM25 are computed once in numpy
(BM25 for each (k1, b) of the grid from one term-frequency matrix: the same formula and Lucene IDF
the index computes), and every fusion configuration is applied to them with Sluice's own `fuse`.
BM25 at the default (k1, b) and dense reproduce `sluice eval`'s figures (exact search here).

Prints: BM25 per (k1, b) next to bm25s over whole documents; the fusion grid per collection; the
leave-one-collection-out choice for each held-out collection; the choice on all collections and
the targets it meets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from index.bm25.encoder import Bm25Encoder
from index.contracts import ScoredPoint
from index.fusion import FusionParams, fuse
from pipelines.beir import as_parsed_documents, doc_id_from_uri, load_beir
from pipelines.evaluation import document_ranking, score_run
from pipelines.tuning import POOLS, describe, fusion_grid

SHARED_BEIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir"
DEPTH_CHUNKS = 200
"""Chunks per list, as `sluice eval` asks for (two per ranked document)."""
TOO_SMALL_TO_TUNE_ON = {"adi"}
"""82 documents: reported and checked, but not part of any choice (data README)."""
NEIGHBOURS = [(0, 0.5), (1, 0.5), (1, 1.0), (2, 0.5)]
"""(chunks on each side, their weight) of BM25's chunk vectors."""
BM25_GRID = [
    (n, w, k1, b) for n, w in NEIGHBOURS for k1 in (0.9, 1.2, 1.5, 2.0) for b in (0.6, 0.75, 0.9)
]
BM25S_DEFAULTS = (1.5, 0.75)
"""bm25s's own k1 and b: the whole-document reference BM25 is held to."""
BASELINE = (FusionParams("rrf", 60, (1.0, 1.0)), 100)
"""Plain RRF k=60 over the two top-100 lists: the reference the targets are stated against."""


Figures = dict[str, dict[str, dict[str, float]]]
"""collection -> configuration -> metric -> value"""
Bm25Config = tuple[int, float, float, float]
"""(neighbours, neighbour weight, k1, b)"""
Ranked = list[tuple[int, float]]
"""(chunk row, score), best first."""


@dataclass
class Collection:
    name: str
    qrels: dict[str, dict[str, int]]
    chunk_ids: list[str]
    chunk_docs: list[str]
    dense: dict[str, Ranked]
    bm25: dict[Bm25Config, dict[str, Ranked]] = field(default_factory=dict)
    bm25_documents: dict[tuple[float, float], dict[str, dict[str, float]]] = field(
        default_factory=dict
    )

    def scores(self, rankings: Mapping[str, Iterable[int]]) -> dict[str, float]:
        run = {
            query: document_ranking(self.chunk_docs[row] for row in rows)
            for query, rows in rankings.items()
        }
        return score_run(self.qrels, run)


class TermMatrix:
    """Term frequencies of a set of texts, from which BM25 at any (k1, b) is a sparse product."""

    def __init__(self, term_counts: Sequence[Mapping[str, float]]) -> None:
        self.vocabulary: dict[str, int] = {}
        rows, columns, counts = [], [], []
        for row, terms in enumerate(term_counts):
            for term, count in terms.items():
                rows.append(row)
                columns.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                counts.append(count)
        shape = (len(term_counts), max(1, len(self.vocabulary)))
        self.tf = sparse.csr_matrix((counts, (rows, columns)), shape=shape, dtype=np.float64)
        self.lengths = np.array([sum(t.values()) for t in term_counts], dtype=np.float64)
        n = len(term_counts)
        frequency = np.bincount(columns, minlength=shape[1]).astype(np.float64)
        self.idf = np.log(1 + (n - frequency + 0.5) / (frequency + 0.5))

    def weights(self, k1: float, b: float, average: float | None = None) -> sparse.csc_matrix:
        """`average`: the avgdl to normalise by (default: the texts' own mean length)."""
        if average is None:
            average = max(1.0, float(self.lengths.mean()))
        norm = k1 * (1 - b + b * self.lengths / average)
        tf = self.tf.tocoo()
        values = tf.data * (k1 + 1) / (tf.data + norm[tf.row])
        return sparse.csc_matrix((values, (tf.row, tf.col)), shape=tf.shape)

    def top(self, weights: sparse.csc_matrix, tokens: list[str], depth: int) -> Ranked:
        counts = Counter(t for t in tokens if t in self.vocabulary)
        if not counts:
            return []
        columns = [self.vocabulary[t] for t in counts]
        query = np.array([n * self.idf[c] for c, n in zip(columns, counts.values(), strict=True)])
        scores = np.asarray(weights[:, columns] @ query).ravel()
        return _top(scores, depth, positive_only=True)


def _top(scores: npt.NDArray[np.float64], depth: int, positive_only: bool = False) -> Ranked:
    order = np.argsort(-scores, kind="stable")[:depth]
    return [(int(i), float(scores[i])) for i in order if not positive_only or scores[i] > 0]


def load_collection(folder: Path, parts: Components) -> Collection:
    dataset = load_beir(folder)
    embedder = parts.embedder()
    chunker = parts.chunker(embedder)
    cache = parts.embedding_cache(embedder)
    chunks = [c for document in as_parsed_documents(dataset) for c in chunker.run(document)]
    hashes = [c.text_hash for c in chunks]
    cached = cache.get_many(hashes)
    missing = [c for c in chunks if c.text_hash not in cached]
    if missing:
        vectors = embedder.embed_documents([c.indexed_text for c in missing])
        cache.put_many([c.text_hash for c in missing], vectors)
        cached.update(zip([c.text_hash for c in missing], vectors, strict=True))
    matrix = _unit(np.stack([cached[h] for h in hashes]))
    queries = dataset.queries
    query_vectors = _unit(np.stack([embedder.embed_query(q) for q in queries.values()]))
    dense_scores = query_vectors @ matrix.T
    dense = {q: _top(dense_scores[i], DEPTH_CHUNKS) for i, q in enumerate(queries)}
    collection = Collection(
        dataset.name,
        dataset.qrels,
        [c.chunk_id for c in chunks],
        [doc_id_from_uri(c.uri) for c in chunks],
        dense,
    )
    base = parts.bm25_params()
    plain = Bm25Encoder(base)
    query_tokens = {q: plain.tokenize(text) for q, text in queries.items()}
    for neighbours, weight in NEIGHBOURS:
        encoder = Bm25Encoder(replace(base, neighbours=neighbours, neighbour_weight=weight))
        terms = TermMatrix([encoder.chunk_term_counts(c) for c in chunks])
        for n, w, k1, b in BM25_GRID:
            if (n, w) == (neighbours, weight):
                weights = terms.weights(k1, b)
                collection.bm25[(n, w, k1, b)] = {
                    q: terms.top(weights, tokens, DEPTH_CHUNKS)
                    for q, tokens in query_tokens.items()
                }
    doc_ids = list(dataset.corpus)
    whole = TermMatrix(
        [Counter(plain.tokenize(f"{title}\n\n{text}")) for title, text in dataset.corpus.values()]
    )
    for k1, b in sorted({(k1, b) for _, _, k1, b in BM25_GRID}):
        doc_weights = whole.weights(k1, b)
        collection.bm25_documents[(k1, b)] = {
            q: document_ranking(doc_ids[i] for i, _ in whole.top(doc_weights, tokens, 100))
            for q, tokens in query_tokens.items()
        }
    return collection


def _unit(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def fused_rows(
    collection: Collection,
    bm25: Bm25Config,
    fusion: FusionParams,
    pool: int,
) -> dict[str, list[int]]:
    rankings = {}
    for query, dense in collection.dense.items():
        dense_points = [ScoredPoint(str(row), score, {}) for row, score in dense[:pool]]
        sparse_points = [
            ScoredPoint(str(row), score, {}) for row, score in collection.bm25[bm25][query][:pool]
        ]
        fused = fuse(dense_points, sparse_points, fusion, DEPTH_CHUNKS)
        rankings[query] = [int(p.id) for p in fused]
    return rankings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="*", type=Path)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    folders = args.datasets or sorted(
        folder for folder in SHARED_BEIR.iterdir() if (folder / "corpus.jsonl").is_file()
    )
    settings = Settings()
    prepare_process(settings.data_dir)
    parts = Components(settings)
    collections = []
    for folder in folders:
        collections.append(load_collection(folder, parts))
        print(f"loaded {folder.name}: {len(collections[-1].chunk_ids)} chunks", flush=True)
    figures: Figures = {c.name: {} for c in collections}
    for c in collections:
        for config, rankings in c.bm25.items():
            figures[c.name][bm25_label(config)] = c.scores(
                {q: [row for row, _ in ranked] for q, ranked in rankings.items()}
            )
        for (k1, b), run in c.bm25_documents.items():
            figures[c.name][f"bm25s documents k1={k1} b={b}"] = score_run(c.qrels, run)
        figures[c.name]["dense"] = c.scores(
            {q: [row for row, _ in ranked] for q, ranked in c.dense.items()}
        )
    bm25 = report_bm25(collections, figures)

    grid = [(fusion, pool) for fusion in fusion_grid() for pool in POOLS]
    for c in collections:
        for fusion, pool in grid:
            figures[c.name][label(fusion, pool)] = c.scores(fused_rows(c, bm25, fusion, pool))
        print(f"fusion grid done on {c.name}", flush=True)
    report_fusion(collections, figures, [label(*g) for g in grid], bm25)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def bm25_label(config: Bm25Config) -> str:
    neighbours, weight, k1, b = config
    return f"bm25 neighbours={neighbours}x{weight:g} k1={k1} b={b}"


def label(fusion: FusionParams, pool: int) -> str:
    return describe(fusion.as_options(pool))


def _mean(figures: Figures, on: Iterable[Collection], key: str) -> float:
    return statistics.fmean(
        figures[c.name][key]["ndcg@10"] for c in on if c.name not in TOO_SMALL_TO_TUNE_ON
    )


def _tuned(collections: Iterable[Collection]) -> list[Collection]:
    return [c for c in collections if c.name not in TOO_SMALL_TO_TUNE_ON]


def report_bm25(collections: list[Collection], figures: Figures) -> Bm25Config:
    """The BM25 grid, its leave-one-out choice, and the choice on every collection."""
    names = [c.name for c in collections]
    print("\n#### BM25 nDCG@10: chunk vectors (as indexed) per configuration\n")
    print("| neighbours × weight | k1 | b | " + " | ".join(names) + " | mean (tuned on) |")
    print("|---|---:|---:|" + "---:|" * (len(names) + 1))
    for config in BM25_GRID:
        key = bm25_label(config)
        cells = " | ".join(f"{figures[n][key]['ndcg@10']:.4f}" for n in names)
        n, w, k1, b = config
        print(f"| {n} × {w:g} | {k1} | {b} | {cells} | {_mean(figures, collections, key):.4f} |")
    print("\nWhole documents (bm25s's unit), same tokens, stemmer and stop set:\n")
    print("| k1 | b | " + " | ".join(names) + " |")
    print("|---:|---:|" + "---:|" * len(names))
    for k1, b in sorted({(k1, b) for _, _, k1, b in BM25_GRID}):
        key = f"bm25s documents k1={k1} b={b}"
        print(
            f"| {k1} | {b} | "
            + " | ".join(f"{figures[n][key]['ndcg@10']:.4f}" for n in names)
            + " |"
        )

    def best(on: list[Collection]) -> Bm25Config:
        return max(BM25_GRID, key=lambda config: _mean(figures, on, bm25_label(config)))

    reference = "bm25s documents k1={} b={}".format(*BM25S_DEFAULTS)
    print("\n#### BM25, leave one collection out\n")
    print("| held out | chosen on the others | its nDCG@10 | bm25s (whole documents) |")
    print("|---|---|---:|---:|")
    for held_out in _tuned(collections):
        config = best([c for c in collections if c is not held_out])
        f = figures[held_out.name]
        print(
            f"| {held_out.name} | {bm25_label(config)} | {f[bm25_label(config)]['ndcg@10']:.4f} "
            f"| {f[reference]['ndcg@10']:.4f} |"
        )
    chosen = best(collections)
    print(f"\nBM25 chosen on every collection: {bm25_label(chosen)}", flush=True)
    return chosen


def margin(figures: dict[str, dict[str, float]], key: str, bm25: Bm25Config) -> float:
    """How far a configuration clears both targets on one collection (negative: misses one):
    no more than 0.5 point below plain RRF k=60, no more than 1 point below the best single mode."""
    ndcg = figures[key]["ndcg@10"]
    baseline = figures[label(*BASELINE)]["ndcg@10"]
    single = max(figures["dense"]["ndcg@10"], figures[bm25_label(bm25)]["ndcg@10"])
    return min(ndcg - baseline + 0.005, ndcg - single + 0.01)


def choose(on: list[Collection], figures: Figures, keys: list[str], bm25: Bm25Config) -> str:
    """The best mean nDCG@10 among configurations that meet both targets on every collection
    tuned on; if none does, the one whose worst miss is smallest."""
    tuned = _tuned(on)
    worst = {k: min(margin(figures[c.name], k, bm25) for c in tuned) for k in keys}
    passing = [k for k in keys if worst[k] >= 0]
    if passing:
        return max(passing, key=lambda k: (_mean(figures, tuned, k), worst[k]))
    return max(keys, key=lambda k: worst[k])


def report_fusion(
    collections: list[Collection], figures: Figures, keys: list[str], bm25: Bm25Config
) -> None:
    names = [c.name for c in collections]
    print(f"\n#### Fusion grid, nDCG@10 ({bm25_label(bm25)})\n")
    print("| configuration | " + " | ".join(names) + " | mean (tuned on) | worst margin |")
    print("|---|" + "---:|" * (len(names) + 2))
    tuned = _tuned(collections)
    for key in keys:
        cells = " | ".join(f"{figures[n][key]['ndcg@10']:.4f}" for n in names)
        worst = min(margin(figures[c.name], key, bm25) for c in tuned)
        print(f"| {key} | {cells} | {_mean(figures, collections, key):.4f} | {worst:+.4f} |")

    print("\n#### Fusion, leave one collection out\n")
    print("| held out | chosen on the others | its nDCG@10 | RRF k=60 | best single | margin |")
    print("|---|---|---:|---:|---:|---:|")
    for held_out in tuned:
        key = choose([c for c in collections if c is not held_out], figures, keys, bm25)
        f = figures[held_out.name]
        single = max(f["dense"]["ndcg@10"], f[bm25_label(bm25)]["ndcg@10"])
        print(
            f"| {held_out.name} | {key} | {f[key]['ndcg@10']:.4f} "
            f"| {f[label(*BASELINE)]['ndcg@10']:.4f} | {single:.4f} "
            f"| {margin(f, key, bm25):+.4f} |"
        )
    chosen = choose(collections, figures, keys, bm25)
    print(f"\nFusion chosen on every collection: {chosen}\n")
    print("| collection | BM25 | dense | chosen | RRF k=60 | margin | Recall@100 | MRR@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in collections:
        f = figures[c.name]
        print(
            f"| {c.name} | {f[bm25_label(bm25)]['ndcg@10']:.4f} "
            f"| {f['dense']['ndcg@10']:.4f} | {f[chosen]['ndcg@10']:.4f} "
            f"| {f[label(*BASELINE)]['ndcg@10']:.4f} | {margin(f, chosen, bm25):+.4f} "
            f"| {f[chosen]['recall@100']:.4f} | {f[chosen]['mrr@10']:.4f} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
