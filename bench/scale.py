"""Ingest at scale: a synthetic corpus of N chunks through the real pipeline, in bounded memory.

The corpus is synthetic, and says so: Markdown (90 %) and plain-text (10 %) files of ~20 chunks
each, in folders of 1,000, written from a fixed seed. Words come from a 30,000-word invented
vocabulary (two to four syllables) drawn with Zipf's law (exponent 1.07, as English text
roughly follows), in sentences of 6-22 words, paragraphs of 3-7 sentences, sections of 3-6
paragraphs under headings: realistic lengths and term statistics, no meaning.

Everything is real except the embedder: parsing (`unstructured`, in the supervised worker
processes), chunking (with the real model's tokenizer), the embedding cache, BM25, upserts into
the embedded Qdrant engine, the manifest, deletes and hybrid search. A CPU cannot embed a
million chunks in reasonable time (~50 chunks/s here), so vectors come from a cheap
deterministic embedder of the same dimension: words feature-hashed into 384 signed buckets
(scikit-learn's `HashingVectorizer`), normalised, so that texts sharing words lie close.

Per size it reports: wall time and chunks/s per stage of the first ingest, its peak RSS (the
ingest process; parse workers separately), disk per chunk, hybrid search p50/p99 with and
without a filter (10 % of the corpus: `filetype = txt`), an unchanged rerun's time and an
edit-one-file (and delete-one-file) rerun's time. Searches are timed after the warm-up that
`sluice serve` does on start (`--warm-up`, default 50; one query right after it is reported
apart). Each phase runs in a process of its own, so each peak RSS is that phase's.

    python bench/scale.py --chunks 100000

The last line printed is one JSON object with `chunks`, `seconds` and `peak_rss_mb` (the first
ingest's), and the rest of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 18
VOCABULARY = 30_000
ZIPF_EXPONENT = 1.07
FILES_PER_FOLDER = 1000
TXT_SHARE = 0.1
DIMENSION = 384
QUERIES = 300
WARM_UP = 50
"""As `sluice serve` by default (SLUICE_WARM_UP_SEARCHES)."""


# -- the synthetic corpus ----------------------------------------------------------------------
class Writer:
    """Deterministic text with Zipf-distributed words."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai")]
        words: set[str] = set()
        while len(words) < VOCABULARY:
            count = int(self.rng.integers(2, 5))
            words.add("".join(self.rng.choice(syllables, count)))
        self.words = np.array(sorted(words, key=lambda w: (len(w), w)))
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
        self.cumulative = np.cumsum(weights / weights.sum())

    def _words(self, count: int) -> list[str]:
        picks = np.searchsorted(self.cumulative, self.rng.random(count))
        return list(self.words[np.minimum(picks, VOCABULARY - 1)])

    def sentence(self) -> str:
        words = self._words(int(self.rng.integers(6, 23)))
        return " ".join(words).capitalize() + "."

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(int(self.rng.integers(3, 8))))

    def heading(self) -> str:
        return " ".join(self._words(int(self.rng.integers(2, 6)))).capitalize()

    def document(self, markdown: bool) -> str:
        parts = [f"# {self.heading()}" if markdown else self.heading()]
        for _ in range(int(self.rng.integers(4, 7))):
            parts.append(f"## {self.heading()}" if markdown else self.heading())
            parts.extend(self.paragraph() for _ in range(int(self.rng.integers(3, 7))))
        return "\n\n".join(parts) + "\n"

    def query(self) -> str:
        # Mid-frequency words, as users' queries are: neither stop-word-like nor unique.
        ranks = self.rng.integers(50, 5000, int(self.rng.integers(3, 7)))
        return " ".join(self.words[ranks])


def write_corpus(folder: Path, files: int) -> None:
    writer = Writer()
    for number in range(files):
        markdown = writer.rng.random() >= TXT_SHARE
        subfolder = folder / f"part-{number // FILES_PER_FOLDER:04}"
        subfolder.mkdir(parents=True, exist_ok=True)
        name = f"doc-{number:07}.{'md' if markdown else 'txt'}"
        (subfolder / name).write_text(writer.document(markdown))


# -- the cheap embedder ------------------------------------------------------------------------
class HashingEmbedder:
    """Feature-hashed bag of words, 384 dimensions: same shape as all-MiniLM-L6-v2's vectors
    at ~1/1000 of its cost. Chunking counts tokens with the real model's tokenizer."""

    model_id = "synthetic/feature-hashing-384"
    query_prefix = ""
    passage_prefix = ""
    cache_key = model_id
    dimension = DIMENSION

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        from index.contracts import TORCH
        from index.models.embedder import SentenceTransformerEmbedder

        self.backend = TORCH
        self.tokenizer = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
        self.vectorizer = HashingVectorizer(n_features=DIMENSION, alternate_sign=True, norm="l2")

    def warm_up(self) -> None:
        self.tokenizer.warm_up()

    @property
    def max_tokens(self) -> int:
        return self.tokenizer.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count_tokens(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.token_spans(text)

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        matrix: npt.NDArray[np.float32] = (
            self.vectorizer.transform(list(texts)).toarray().astype(np.float32)
        )
        empty = ~matrix.any(axis=1)
        matrix[empty, 0] = 1.0  # a text of no words still gets a unit vector
        return matrix

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        vector: npt.NDArray[np.float32] = self.embed_documents([text])[0]
        return vector


# -- phases, each in a process of its own ------------------------------------------------------
def _settings(data_dir: Path) -> Any:
    from config.settings import Settings

    return Settings(data_dir=data_dir, index_name="scale")


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


class RssSampler:
    """Peaks of the process's anonymous memory (its heap: Python objects, the engine's
    in-RAM structures) and file-backed resident pages (memory-mapped index files, which the
    kernel can drop), sampled twice a second: `ru_maxrss` counts both."""

    def __init__(self) -> None:
        import threading

        self.peaks = {"RssAnon": 0, "RssFile": 0}
        self.started = time.perf_counter()
        self.series: list[tuple[float, int, int]] = []  # (seconds, anon MB, file MB) every 10 s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopped.wait(0.5):
            now = {}
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in self.peaks:
                    now[key] = int(value.split()[0])
                    self.peaks[key] = max(self.peaks[key], now[key])
            seconds = time.perf_counter() - self.started
            if not self.series or seconds - self.series[-1][0] >= 10:
                anon, file = now["RssAnon"] // 1024, now["RssFile"] // 1024
                self.series.append((round(seconds), anon, file))

    def stop(self) -> dict[str, Any]:
        self.stopped.set()
        self.thread.join()
        return {
            "peak_anon_mb": round(self.peaks["RssAnon"] / 1024, 1),
            "peak_file_mb": round(self.peaks["RssFile"] / 1024, 1),
            "rss_every_10s": self.series,
        }


def phase_ingest(data_dir: Path, corpus: Path) -> dict[str, Any]:
    from composition.components import Components
    from ingest.sources.local_folder import LocalFolderSource
    from pipelines.ingest_sync import sync_source

    components = Components(_settings(data_dir))
    embedder = HashingEmbedder()
    store = components.store()
    manifest = components.manifest()
    sampler = RssSampler()
    started = time.perf_counter()
    try:
        parts = components.ingest_parts(store, embedder)  # type: ignore[arg-type]
        report = sync_source(
            LocalFolderSource(corpus), "synthetic", parts, manifest, components.sync_options()
        )
    finally:
        manifest.close()
        store.close()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "chunks": report.chunks,
        "new": len(report.new),
        "changed": len(report.changed),
        "deleted": len(report.deleted),
        "unchanged": report.unchanged,
        "failed": len(report.failed),
        "embedded": report.embedded,
        "from_cache": report.from_cache,
        "points_in_index": report.points_in_index,
        "stage_seconds": report.stage_seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "parse_worker_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
        **sampler.stop(),
    }


def phase_search(data_dir: Path, warm_up_searches: int = WARM_UP) -> dict[str, Any]:
    from composition.components import Components
    from index.contracts import MatchAny, PayloadFilter
    from index.search.searcher import IndexSearcher
    from retrieval_api.warm_up import warm_up

    components = Components(_settings(data_dir))
    embedder = HashingEmbedder()
    store = components.store()
    writer = Writer(seed=SEED + 1)
    queries = [writer.query() for _ in range(QUERIES)]
    searcher = IndexSearcher(store, lambda spec: embedder)  # type: ignore[arg-type,return-value]
    only_txt = PayloadFilter(must=[MatchAny("filetype", ["txt"])])
    figures: dict[str, Any] = {}
    try:
        # What `sluice serve` does before it takes requests: the first searches after opening
        # page the engine's segments in. Then the first query is timed on its own too.
        warmed = warm_up(store, searcher, "scale", warm_up_searches)
        figures["warm_up"] = {"searches": warmed.searches, "seconds": round(warmed.seconds, 2)}
        started = time.perf_counter()
        searcher.search("scale", Writer(seed=SEED + 3).query(), "hybrid", 10)
        figures["first_search_ms"] = round((time.perf_counter() - started) * 1000, 1)
        for label, payload_filter in (("hybrid", None), ("hybrid_filtered", only_txt)):
            seconds = []
            hits = 0
            for query in queries:
                started = time.perf_counter()
                outcome = searcher.search("scale", query, "hybrid", 10, None, payload_filter)
                seconds.append(time.perf_counter() - started)
                hits += len(outcome.result.hits)
            figures[label] = {
                "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 1),
                "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 1),
                "mean_hits": round(hits / len(queries), 1),
            }
    finally:
        store.close()
    figures["peak_rss_mb"] = _peak_rss_mb()
    return figures


def _run_phase(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"phase {args[:2]} failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _chunks_per_file(sample: int = 20) -> float:
    """Measured on a sample with the real parser and chunker."""
    from composition.components import Components
    from ingest.sources.local_folder import LocalFolderSource

    with tempfile.TemporaryDirectory() as folder:
        write_corpus(Path(folder), sample)
        components = Components(_settings(Path(folder) / "data"))
        chunker = components.chunker(HashingEmbedder())  # type: ignore[arg-type]
        parser = components.parser()
        source = LocalFolderSource(Path(folder) / "part-0000")
        total = 0
        for item in source.list_items():
            document = parser.parse(source.fetch(item, Path(folder)))
            total += len(chunker.run(document))
    return total / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--work-dir", type=Path, help="kept afterwards (default: a temp dir)")
    parser.add_argument("--phase", choices=["ingest", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--warm-up", type=int, default=WARM_UP, help="searches before timing (as sluice serve)"
    )
    args = parser.parse_args()
    if args.phase == "ingest":
        print(json.dumps(phase_ingest(args.data_dir, args.corpus)))
        return
    if args.phase == "search":
        print(json.dumps(phase_search(args.data_dir, args.warm_up)))
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sluice-scale-"))
    corpus, data_dir = work / "corpus", work / "data"
    per_file = _chunks_per_file()
    files = max(1, round(args.chunks / per_file))
    started = time.perf_counter()
    write_corpus(corpus, files)
    print(
        f"corpus: {files:,} files (~{per_file:.1f} chunks each), "
        f"{_disk_mb(corpus):,.0f} MB, written in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    first = _run_phase("--phase", "ingest", "--data-dir", str(data_dir), "--corpus", str(corpus))
    chunks = first["chunks"]
    stages = first["stage_seconds"]
    rates = {k: round(chunks / v) for k, v in stages.items() if v and k in ("embed", "upsert")}
    rates["read_parse_cpu"] = (
        round(chunks / stages["read_parse"]) if stages.get("read_parse") else 0
    )
    rates["overall"] = round(chunks / first["seconds"])
    print(
        f"first ingest: {chunks:,} chunks in {first['seconds']:,.0f} s; peak RSS "
        f"{first['peak_rss_mb']:,.0f} MB (parse workers "
        f"{first['parse_worker_peak_rss_mb']:,.0f} MB); stages {stages}",
        flush=True,
    )
    total_mb = _disk_mb(data_dir)
    disk = {
        "index_mb": round(_disk_mb(data_dir / "qdrant"), 1),
        "embedding_cache_mb": round(_disk_mb(data_dir / "embedding-cache"), 1),
        "data_dir_mb": round(total_mb, 1),
        "bytes_per_chunk": round(total_mb * 2**20 / max(chunks, 1)),
    }

    unchanged = _run_phase(
        "--phase", "ingest", "--data-dir", str(data_dir), "--corpus", str(corpus)
    )
    print(
        f"unchanged rerun: {unchanged['seconds']:,.1f} s "
        f"({unchanged['seconds'] / first['seconds']:.1%} of the first)",
        flush=True,
    )

    edited = sorted(corpus.glob("part-0000/*"))[0]
    edited.write_text(edited.read_text() + "\n\n" + Writer(seed=SEED + 2).paragraph() + "\n")
    sorted(corpus.glob("part-0000/*"))[1].unlink()
    edit = _run_phase("--phase", "ingest", "--data-dir", str(data_dir), "--corpus", str(corpus))
    print(
        f"edit-one-file (and delete one) rerun: {edit['seconds']:,.1f} s, "
        f"{edit['changed']} changed, {edit['deleted']} deleted, {edit['embedded']} embedded",
        flush=True,
    )

    search = _run_phase(
        "--phase", "search", "--data-dir", str(data_dir), "--warm-up", str(args.warm_up)
    )
    print(
        f"hybrid search: {search['hybrid']}, with a 10 % filter: {search['hybrid_filtered']}",
        flush=True,
    )
    result = {
        "chunks": chunks,
        "seconds": first["seconds"],
        "peak_rss_mb": first["peak_rss_mb"],
        "files": files,
        "embedder": HashingEmbedder.model_id,
        "chunks_per_s": rates,
        "first_ingest": first,
        "disk": disk,
        "unchanged_rerun_s": unchanged["seconds"],
        "unchanged_rerun_fraction": round(unchanged["seconds"] / first["seconds"], 4),
        "unchanged_rerun_peak_rss_mb": unchanged["peak_rss_mb"],
        "edit_rerun_s": edit["seconds"],
        "edit_rerun": {k: edit[k] for k in ("changed", "deleted", "embedded", "points_in_index")},
        "search": search,
        "cpu_count": os.cpu_count(),
    }
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
