"""Padding waste of embedding batches: count-bounded (sentence-transformers sorts a call's texts
by characters, then cuts batches of 64) against token-bounded
(`index.models.embedder.token_batches`: sorted by tokens, at most SLUICE_EMBEDDING_BATCH_TOKENS
padded tokens a batch), over the chunks of real indexes in ingest windows of 256, and the
embedding throughput of each on a sample.

    .venv/bin/python bench/padding.py DATA_DIR INDEX [DATA_DIR INDEX ...] [--sample 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from index.models.embedder import PaddingStats, SentenceTransformerEmbedder, token_batches
from index.store.embedded import EdgeVectorStore

WINDOW = 256
COUNT = 64
BUDGET = 16384


def chunk_texts(data_dir: Path, index: str) -> list[str]:
    store = EdgeVectorStore(data_dir / "qdrant")
    try:
        collection = store.resolve_alias(index) or index
        return [
            str(payload.get("text", ""))
            for _, payload in store.scroll(collection, ["text"], page_size=1024)
        ]
    finally:
        store.close()


def count_batches(texts: list[str], size: int) -> list[list[int]]:
    """What sentence-transformers does with one call: longest (in characters) first, `size`
    texts a batch."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


def padding(texts: list[str], embedder: SentenceTransformerEmbedder) -> tuple[float, float]:
    counted, bounded = PaddingStats(), PaddingStats()
    for start in range(0, len(texts), WINDOW):
        window = texts[start : start + WINDOW]
        lengths = embedder.sequence_lengths(window)
        by_count = count_batches(window, COUNT)
        # The padded length of a batch is its longest text, wherever it sits in the batch.
        counted.real += sum(lengths)
        counted.padded += sum(max(lengths[i] for i in b) * len(b) for b in by_count)
        bounded.add(lengths, token_batches(lengths, BUDGET))
    return counted.ratio, bounded.ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="DATA_DIR INDEX, repeated")
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = "sentence-transformers/all-MiniLM-L6-v2"
    counted = SentenceTransformerEmbedder(model, device="cpu", batch_size=COUNT)
    bounded = SentenceTransformerEmbedder(model, device="cpu", batch_tokens=BUDGET)
    bounded._model = counted.model
    for data_dir, index in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        texts = chunk_texts(Path(data_dir), index)
        before, after = padding(texts, counted)
        print(
            f"{index}: {len(texts)} chunks; padded/real tokens: count-bounded {before:.3f}, "
            f"token-bounded {after:.3f}"
        )
        sample = texts[: args.sample]
        rates: dict[str, list[float]] = {"count": [], "tokens": []}
        for _ in range(args.rounds):
            for name, embedder in (("count", counted), ("tokens", bounded)):
                started = time.perf_counter()
                embedder.embed_documents(sample)
                rates[name].append(len(sample) / (time.perf_counter() - started))
        c, t = (statistics.median(rates[n]) for n in ("count", "tokens"))
        print(
            f"  {len(sample)} chunks: count-bounded {c:.1f}/s, token-bounded {t:.1f}/s "
            f"({t / c:.2f}x; medians of {args.rounds})"
        )


if __name__ == "__main__":
    main()
