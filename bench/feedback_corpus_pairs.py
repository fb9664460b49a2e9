"""Feedback pairs plus pseudo-queries from the corpus: does the corpus make up for the queries that
1,000 feedback events do not reach?

    .venv/bin/python bench/feedback_corpus_pairs.py ../shared/data/beir/scifact 01000
    .venv/bin/python bench/feedback_loop.py train ../shared/data/beir/scifact --only 01000+corpus

Reads a finished `bench/feedback_loop.py simulate` (its index and OUT/pairs-NAME.jsonl) and writes
OUT/pairs-NAME+corpus.jsonl: the feedback pairs and `sluice adapt`'s pseudo-queries made from the
simulation's own index (title → body, else a sentence, else a span; one BM25 hard negative each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("pairs", help="the feedback pairs' name: 01000 for OUT/pairs-01000.jsonl")
    parser.add_argument("--queries", type=int, default=2000, help="pseudo-queries at most")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from feedback_loop import _settings, splits

    from composition.components import Components
    from pipelines.adaptation import adaptation_pairs
    from pipelines.training_pairs import read_pairs, write_pairs

    out = args.out or Path(".bench/feedback") / args.dataset.name
    _, test = splits(args.dataset)
    settings = _settings(out, test.name)
    parts = Components(settings)
    store = parts.store()
    try:
        collection = store.resolve_alias(settings.index_name)
        assert collection is not None, "run bench/feedback_loop.py simulate first"
        payloads = (p.payload for page in store.read_points(collection) for p in page)
        corpus, made = adaptation_pairs(payloads, parts.searcher(store), collection, args.queries)
    finally:
        store.close()
    feedback = read_pairs(out / f"pairs-{args.pairs}.jsonl")
    written = write_pairs(out / f"pairs-{args.pairs}+corpus.jsonl", feedback + corpus)
    print(f"{len(feedback)} feedback pairs + {len(corpus)} from pseudo-queries {made}: {written}")


if __name__ == "__main__":
    main()
