"""What each remaining difference from Lucene's (and bm25s's) BM25 is worth, per collection.

    SLUICE_DATA_DIR=.bench/all .venv/bin/python bench/bm25_deviations.py

BM25 alone, nDCG@10, chunk vectors at the configured defaults, with one thing changed at a time:
single-character tokens dropped (bm25s's default token pattern), Porter's stemmer instead of
Snowball English (Lucene's EnglishAnalyzer uses Porter), no stop words, no neighbouring chunks,
each distinct query term counted once (the query side before repeated terms counted);
and whole documents as the unit instead of chunks (what Lucene and bm25s index).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import replace

from defaults_grid import DEPTH_CHUNKS, SHARED_BEIR, TermMatrix

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from index.bm25.encoder import Bm25Encoder
from index.contracts import Bm25Params
from pipelines.beir import as_parsed_documents, doc_id_from_uri, load_beir
from pipelines.evaluation import document_ranking, score_run


class QueryTermsOnce(Bm25Encoder):
    """The query side as it was before repeated query terms counted (documents unchanged)."""

    def query_tokens(self, text: str) -> list[str]:
        return list(dict.fromkeys(self.tokenize(text)))


class NoSingleCharacters(Bm25Encoder):
    def tokenize(self, text: str) -> list[str]:
        return [t for t in super().tokenize(text) if len(t) > 1]


def query_tokens(encoder: Bm25Encoder, text: str) -> list[str]:
    if isinstance(encoder, QueryTermsOnce):
        return encoder.query_tokens(text)
    return encoder.tokenize(text)


def variants(params: Bm25Params) -> dict[str, Bm25Encoder]:
    return {
        "Sluice defaults": Bm25Encoder(params),
        "each query term once (before the query fix)": QueryTermsOnce(params),
        "single-character tokens dropped": NoSingleCharacters(params),
        "Porter stemmer": Bm25Encoder(replace(params, language="porter")),
        "no stop words": Bm25Encoder(replace(params, stopwords="none")),
        "no neighbouring chunks": Bm25Encoder(replace(params, neighbours=0)),
    }


def main() -> None:
    settings = Settings()
    prepare_process(settings.data_dir)
    parts = Components(settings)
    params = parts.bm25_params()
    chunker = parts.chunker(parts.embedder())
    folders = sorted(f for f in SHARED_BEIR.iterdir() if (f / "corpus.jsonl").is_file())
    table: dict[str, dict[str, float]] = {}
    for folder in folders:
        dataset = load_beir(folder)
        chunks = [c for d in as_parsed_documents(dataset) for c in chunker.run(d)]
        docs = [doc_id_from_uri(c.uri) for c in chunks]
        for name, encoder in variants(params).items():
            terms = TermMatrix([encoder.chunk_term_counts(c) for c in chunks])
            weights = terms.weights(params.k1, params.b)
            run = {
                q: document_ranking(
                    docs[i]
                    for i, _ in terms.top(weights, query_tokens(encoder, text), DEPTH_CHUNKS)
                )
                for q, text in dataset.queries.items()
            }
            table.setdefault(name, {})[dataset.name] = score_run(dataset.qrels, run)["ndcg@10"]
        encoder = Bm25Encoder(params)
        whole = TermMatrix(
            [Counter(encoder.tokenize(f"{t}\n\n{x}")) for t, x in dataset.corpus.values()]
        )
        ids = list(dataset.corpus)
        weights = whole.weights(params.k1, params.b)
        run = {
            q: document_ranking(ids[i] for i, _ in whole.top(weights, encoder.tokenize(text), 100))
            for q, text in dataset.queries.items()
        }
        table.setdefault("whole documents", {})[dataset.name] = score_run(dataset.qrels, run)[
            "ndcg@10"
        ]
        print(f"measured {dataset.name}", flush=True)
    names = [f.name for f in folders]
    print("\n| variant | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
    for variant, scores in table.items():
        cells = " | ".join(f"{scores[n]:.4f}" for n in names)
        print(f"| {variant} | {cells} | {statistics.fmean(scores.values()):.4f} |")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
