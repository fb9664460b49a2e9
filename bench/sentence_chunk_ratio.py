"""How many short sentences one chunk costs to embed: the factor that turns a published
sentences-per-second figure into chunks per second, for the capacity plan (docs/scaling.md).

Model cards publish embedding speed in sentences per second (all-MiniLM-L6-v2: 14,200 on a V100,
sbert.net); Sluice embeds chunks. This embeds, side by side with the same model on this machine,
short sentences (the dataset's queries) and chunk-sized passages (its documents cut to
`--chunk-tokens` word pieces, Sluice's mean chunk on SciFact being ~170), in alternating rounds,
and prints the median throughput of each and their ratio.

    .venv/bin/python bench/sentence_chunk_ratio.py ../shared/data/beir/scifact

On a CPU the cost of a text is close to proportional to its tokens; on a GPU short sentences
leave it idle more (launch and padding overheads weigh more), so a published GPU sentence rate
times this CPU ratio is a lower bound for the GPU's chunk rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu import MODEL, embedding, passages


def chunk_sized(texts: list[str], tokens: int) -> list[str]:
    """Each text cut to its first `tokens` word pieces (texts shorter than that are left out)."""
    from transformers import AutoTokenizer

    from index.models.catalog import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    cut = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= tokens:
            cut.append(str(tokenizer.decode(ids[:tokens])))
    return cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--chunk-tokens", type=int, default=170)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    queries = [
        json.loads(line)["text"]
        for line in (args.dataset / "queries.jsonl").read_text().splitlines()[: args.texts]
    ]
    chunks = chunk_sized(passages(args.dataset, 4 * args.texts), args.chunk_tokens)[: args.texts]
    rates: dict[str, list[float]] = {"sentences": [], "chunks": []}
    for _ in range(args.rounds):
        for name, texts in (("sentences", queries), ("chunks", chunks)):
            rates[name].append(embedding(texts, [args.batch_size])[0]["chunks_per_s"])
    sentence_rate = statistics.median(rates["sentences"])
    chunk_rate = statistics.median(rates["chunks"])
    print(
        json.dumps(
            {
                "sentences": len(queries),
                "chunks": len(chunks),
                "chunk_tokens": args.chunk_tokens,
                "sentences_per_s": round(sentence_rate, 1),
                "chunks_per_s": round(chunk_rate, 1),
                "chunks_per_sentence": round(chunk_rate / sentence_rate, 4),
                "rounds": rates,
            }
        )
    )


if __name__ == "__main__":
    main()
