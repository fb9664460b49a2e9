"""Ingest throughput: documents/s, chunks/s, pipeline vs bare `model.encode`, unchanged rerun.

    .venv/bin/python bench/ingest_throughput.py ../shared/data/docs ../shared/data/beir/scifact

(Not `bench/ingest.py`: a script's folder comes first on sys.path, and a file of that name would
shadow the `ingest` package for every script in `bench/`.)

For each corpus (a folder, or a BEIR folder sliced to --beir-docs documents written out as
Markdown files), in a fresh data dir: a first sync through the real pipeline (`run_sync`:
parallel parsing, batched embedding and upserts, manifest), then `model.encode` on the same chunk
texts in one call, then a second sync over the unchanged source. Prints one table row per corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from flows.ingest_flow import run_sync
from index.models.embedder import SentenceTransformerEmbedder


def beir_as_files(folder: Path, limit: int, into: Path) -> Path:
    """The first `limit` documents of a BEIR corpus as Markdown files (title as the heading)."""
    into.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open() as handle:
        for count, line in enumerate(handle):
            if count >= limit:
                break
            doc = json.loads(line)
            name = "".join(c if c.isalnum() else "_" for c in str(doc["_id"]))
            (into / f"{name}.md").write_text(f"# {doc.get('title') or name}\n\n{doc['text']}\n")
    return into


def bare_encode_seconds(settings: Settings, texts: list[str], repeats: int) -> float:
    """Median seconds of one `model.encode` call over all the texts (same batch size)."""
    embedder = Components(settings).embedder()
    assert isinstance(embedder, SentenceTransformerEmbedder)
    model = embedder.model
    model.encode(texts[:64], batch_size=settings.embedding_batch_size)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.encode(
            texts,
            batch_size=settings.embedding_batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def indexed_texts(settings: Settings) -> list[str]:
    from chunking.types import indexed_text

    store = Components(settings).store()
    try:
        collection = store.resolve_alias(settings.index_name)
        assert collection
        return [
            indexed_text(str(p.get("context") or ""), str(p["text"]))
            for _, p in store.scroll(collection, ["context", "text"])
        ]
    finally:
        store.close()


def bench(name: str, folder: Path, workers: int, repeats: int) -> dict[str, float | int | str]:
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    settings = Settings(data_dir=data_dir, parse_workers=workers, exclude=["**/.*", "MANIFEST.tsv"])
    config = Components(settings).folder_source(folder)
    started = time.perf_counter()
    first = run_sync(settings, config)
    first_seconds = time.perf_counter() - started
    texts = indexed_texts(settings)
    bare = bare_encode_seconds(settings, texts, repeats)
    started = time.perf_counter()
    second = run_sync(settings, config)
    second_seconds = time.perf_counter() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    documents = len(first.new)
    pipeline_rate = first.embedded / first.stage_seconds["embed"]
    bare_rate = len(texts) / bare
    return {
        "corpus": name,
        "documents": documents,
        "failed": len(first.failed),
        "chunks": first.chunks,
        "first_s": round(first_seconds, 1),
        "docs_per_s": round(documents / first_seconds, 2),
        "chunks_per_s": round(first.chunks / first_seconds, 2),
        "pipeline_embed_per_s": round(pipeline_rate, 1),
        "bare_encode_per_s": round(bare_rate, 1),
        "embed_ratio": round(pipeline_rate / bare_rate, 3),
        "rerun_s": round(second_seconds, 2),
        "rerun_fraction": round(second_seconds / first_seconds, 4),
        "rerun_unchanged": second.unchanged,
        "stages": json.dumps(first.stage_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpora", nargs="+", type=Path, help="folders or BEIR folders")
    parser.add_argument("--beir-docs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="parse processes")
    parser.add_argument("--repeats", type=int, default=3, help="bare encode repetitions")
    args = parser.parse_args()
    prepare_process(Path(tempfile.gettempdir()) / "sluice-bench-prefect")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-corpus-") as scratch:
        for corpus in args.corpora:
            folder = corpus
            if (corpus / "corpus.jsonl").is_file():
                folder = beir_as_files(corpus, args.beir_docs, Path(scratch) / corpus.name)
            row = bench(folder.name, folder, args.workers, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    keys = [k for k in rows[0] if k != "stages"]
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    for row in rows:
        print(f"stage seconds, {row['corpus']}: {row['stages']}")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
