"""Retrieval evaluation on BEIR-format collections, scored with ranx.

Queries go through `IndexSearcher`, the same code path `/retrieve` uses; a query's chunk hits
become a document ranking by each document's best chunk.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from chunking.types import Chunk, Chunker
from index.contracts import (
    Bm25Params,
    Embedder,
    HybridOptions,
    SearchMode,
    VectorQuantization,
    VectorStore,
)
from index.search.searcher import IndexSearcher
from index.search.shaping import Shape, shape
from index.versions import collection_name, versions_of
from index.write.embedding_cache import EmbeddingCache
from index.write.target import IndexTarget, write_documents
from pipelines.beir import BeirDataset, as_parsed_documents, doc_id_from_uri, load_beir
from pipelines.cost import Cost
from pipelines.progress import ProgressCallback, no_progress

METRICS = ("ndcg@10", "recall@100", "mrr@10")
EvalMode = Literal["bm25", "dense", "hybrid", "hybrid+rerank"]
MODES: tuple[EvalMode, ...] = ("bm25", "dense", "hybrid", "hybrid+rerank")
DEPTH = 100
SHAPES = ("hybrid+group_by", "hybrid+mmr0.1", "hybrid+mmr0.3", "hybrid+mmr0.5")
"""What `sluice eval --shapes` adds: /retrieve's group_by and MMR at three diversity weights,
over plain hybrid search."""
_SHAPED = re.compile(r"^(bm25|dense|hybrid|hybrid\+rerank)\+(group_by|mmr(0(\.\d+)?|1(\.0+)?))$")

Run = dict[str, dict[str, float]]


def is_mode(name: str) -> bool:
    """A mode (`hybrid`), or a mode with a result shape (`hybrid+group_by`, `dense+mmr0.3`)."""
    return name in MODES or bool(_SHAPED.match(name))


def parse_mode(name: str) -> tuple[EvalMode, Shape | None]:
    """The search mode of `name` and the shape applied to its ranking, as /retrieve would with
    `group_by: "doc"` (one chunk per document) or `mmr: {"diversity": x}`."""
    if name in MODES:
        return name, None
    if not (match := _SHAPED.match(name)):
        raise ValueError(f"unknown evaluation mode {name!r}")
    mode, shaping = cast(EvalMode, match.group(1)), match.group(2)
    if shaping == "group_by":
        return mode, Shape(limit=DEPTH, group_by="doc", group_size=1, highlights=False)
    diversity = float(shaping.removeprefix("mmr"))
    return mode, Shape(limit=2 * DEPTH, mmr_diversity=diversity, highlights=False)


@dataclass
class EvalReport:
    dataset: str
    documents: int
    queries: int
    chunks: int
    embedding_model: str
    parameters: dict[str, Any]
    modes: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    embedded: int = 0
    from_cache: int = 0
    cost: Cost = field(default_factory=Cost)
    """Indexing the corpus and running the queries: CPU of the whole evaluation, GPU and
    tokens of the corpus's embedding."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"### {self.dataset}: {self.documents} documents, {self.queries} test queries",
            "",
            f"Embedding model `{self.embedding_model}`; "
            f"parameters `{json.dumps(self.parameters)}`.",
            "",
            "| mode | " + " | ".join(METRICS) + " | distinct docs in top 10 chunks | ms/query "
            "| degraded queries |",
            "|---|" + "---:|" * (len(METRICS) + 3),
        ]
        for mode, scores in self.modes.items():
            cells = " | ".join(f"{scores[m]:.4f}" for m in METRICS)
            lines.append(
                f"| {mode} | {cells} | {scores.get('distinct_docs@10', 0):.2f} "
                f"| {scores['ms_per_query']:.1f} | {scores.get('degraded_queries', 0):.0f} |"
            )
        lines += ["", f"Cost: {self.cost.describe()}."]
        return "\n".join(lines)


@dataclass
class IndexingResult:
    collection: str
    points_in_index: int
    stage_seconds: dict[str, float]
    embedded: int
    from_cache: int
    tokens_embedded: int = 0


def index_chunks(
    chunks_by_doc: dict[str, list[Chunk]],
    embedder: Embedder,
    store: VectorStore,
    alias: str,
    bm25: Bm25Params,
    cache: EmbeddingCache | None = None,
    progress: ProgressCallback = no_progress,
    vector_quantization: VectorQuantization = "none",
) -> IndexingResult:
    """Write already chunked documents into the index behind `alias` (evaluation indexes)."""
    target = IndexTarget(store, alias, embedder, bm25, cache, vector_quantization)
    # BM25's average length is measured on the whole corpus here, not only a first batch.
    target.writer([c for chunks in chunks_by_doc.values() for c in chunks])
    done = 0

    def advance(doc_ids: list[str]) -> None:
        nonlocal done
        done += len(doc_ids)
        progress("embed", done, len(chunks_by_doc))

    write_documents(target, chunks_by_doc.items(), after_write=advance)
    writer = target.writer([])
    return IndexingResult(
        collection=writer.collection,
        points_in_index=store.count(writer.collection),
        stage_seconds={
            "embed": round(writer.stats.embed_seconds, 3),
            "upsert": round(writer.stats.upsert_seconds, 3),
        },
        embedded=writer.stats.embedded,
        from_cache=writer.stats.from_cache,
        tokens_embedded=writer.stats.tokens_embedded,
    )


def eval_alias(dataset: str) -> str:
    return "eval-" + re.sub(r"[^a-z0-9_-]+", "-", dataset.lower())[:50]


def build_eval_index(
    dataset: BeirDataset,
    chunker: Chunker,
    embedder: Embedder,
    store: VectorStore,
    bm25: Bm25Params,
    cache: EmbeddingCache | None,
    progress: ProgressCallback = no_progress,
    vector_quantization: VectorQuantization = "none",
) -> tuple[str, IndexingResult, int]:
    """A fresh index of the corpus (dense vectors come from the cache when known)."""
    alias = eval_alias(dataset.name)
    for version in versions_of(store, alias):
        store.drop_collection(collection_name(alias, version))
    documents = as_parsed_documents(dataset)
    chunks_by_doc = {}
    for done, document in enumerate(documents, start=1):
        chunks_by_doc[document.source.doc_id] = chunker.run(document)
        if done % 500 == 0 or done == len(documents):
            progress("chunk", done, len(documents))
    result = index_chunks(
        chunks_by_doc, embedder, store, alias, bm25, cache, progress, vector_quantization
    )
    return alias, result, sum(len(c) for c in chunks_by_doc.values())


def retrieve_run(
    searcher: IndexSearcher,
    alias: str,
    queries: dict[str, str],
    mode: str,
    options: HybridOptions | None = None,
    degraded: list[str] | None = None,
    distinct: list[int] | None = None,
) -> Run:
    """Each query's top `DEPTH` documents in order of their best chunk (with `group_by`, in
    the order of the groups, which is the same by construction). Each query's `degraded`
    reasons (a skipped rerank) are appended to `degraded`, and the number of distinct
    documents among its top 10 chunks to `distinct`."""
    run: Run = {}
    eval_mode, result_shape = parse_mode(mode)
    rerank = eval_mode == "hybrid+rerank"
    search_mode: SearchMode = "hybrid" if eval_mode == "hybrid+rerank" else eval_mode
    pool = searcher.candidate_pool(alias, options) if result_shape else 0
    for query_id, text in queries.items():
        limit = result_shape.depth(pool) if result_shape else 2 * DEPTH
        outcome = searcher.search(alias, text, search_mode, limit, options, rerank=rerank)
        if degraded is not None and outcome.degraded:
            degraded.append("; ".join(outcome.degraded))
        hits = outcome.result.hits
        if result_shape is not None:
            hits = shape(searcher, outcome, text, result_shape).hits
        doc_ids = [doc_id_from_uri(str(hit.payload["uri"])) for hit in hits]
        if distinct is not None:
            distinct.append(len(set(doc_ids[:10])))
        run[query_id] = document_ranking(doc_ids)
    return run


def document_ranking(hit_doc_ids: Iterable[str], depth: int = DEPTH) -> dict[str, float]:
    """The top `depth` documents of a chunk ranking, each at its best chunk's position (scored
    by position, so reranked heads and first-stage tails compare correctly)."""
    ranking: dict[str, float] = {}
    for position, doc_id in enumerate(hit_doc_ids):
        ranking.setdefault(doc_id, float(2 * depth - position))
        if len(ranking) == depth:
            break
    return ranking or {"__no_hit__": 0.0}


def load_golden_set(path: Path) -> BeirDataset:
    """An index's golden queries: a BEIR folder (its test split), or a JSONL file with one
    `{"query": "...", "relevant": ["install.md", ...]}` per line. A hit matches a relevant entry
    by the last segment of its URI: a BEIR id, or a file's name."""
    if path.is_dir():
        return load_beir(path)
    if not path.is_file():
        raise FileNotFoundError(f"golden set {path} does not exist")
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            query, relevant = str(entry["query"]), [str(r) for r in entry["relevant"]]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f'{path}:{number}: expected {{"query": ..., "relevant": [...]}} ({error})'
            ) from error
        if query.strip() and relevant:
            queries[f"q{number}"] = query
            qrels[f"q{number}"] = dict.fromkeys(relevant, 1)
    if not queries:
        raise ValueError(f"golden set {path} has no queries with relevant documents")
    return BeirDataset(path.stem, {}, queries, qrels)


def score_run(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    from ranx import Qrels, evaluate
    from ranx import Run as RanxRun

    scores = evaluate(Qrels(qrels), RanxRun(run), list(METRICS), make_comparable=True)
    return {metric: float(scores[metric]) for metric in METRICS}


def evaluate_modes(
    dataset: BeirDataset,
    searcher: IndexSearcher,
    alias: str,
    modes: Sequence[str],
    options: HybridOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for done, mode in enumerate(modes, start=1):
        started = time.perf_counter()
        degraded: list[str] = []
        distinct: list[int] = []
        run = retrieve_run(searcher, alias, dataset.queries, mode, options, degraded, distinct)
        elapsed = time.perf_counter() - started
        scores = score_run(dataset.qrels, run)
        scores["ms_per_query"] = 1000 * elapsed / max(1, len(dataset.queries))
        scores["degraded_queries"] = len(degraded)
        scores["distinct_docs@10"] = sum(distinct) / max(1, len(distinct))
        results[mode] = scores
        progress("query", done, len(modes))
    return results


def write_reports(report: EvalReport, folder: Path) -> list[Path]:
    """`<dataset>.json`, `<dataset>.md` and a bar chart `<dataset>.png` comparing the modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / re.sub(r"[^A-Za-z0-9_.-]+", "-", report.dataset)
    json_path, md_path, png_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(report.to_dict(), indent=2))
    md_path.write_text(report.to_markdown() + "\n")
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(report.modes))
    for i, (mode, scores) in enumerate(report.modes.items()):
        positions = [m + i * width for m in range(len(METRICS))]
        bars = axis.bar(positions, [scores[m] for m in METRICS], width, label=mode)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks([m + width * (len(report.modes) - 1) / 2 for m in range(len(METRICS))])
    axis.set_xticklabels(METRICS)
    axis.set_ylim(0, 1)
    axis.set_title(f"{report.dataset}: {report.queries} queries, {report.documents} documents")
    axis.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)
    plt.close(figure)
    return [json_path, md_path, png_path]
