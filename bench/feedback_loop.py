"""Learning from clicks, simulated honestly: simulated users read Sluice's own answers, click
with position bias and noise, and Sluice trains a reranker from what they did.

    .venv/bin/python bench/feedback_loop.py simulate ../shared/data/beir/scifact
    .venv/bin/python bench/feedback_loop.py train ../shared/data/beir/scifact   # CPU or GPU
    .venv/bin/python bench/feedback_loop.py report ../shared/data/beir/scifact

`simulate` indexes the corpus, serves it (the real app, `SLUICE_FEEDBACK_EXPLORATION` on), and
for each checkpoint N of feedback events sends `/retrieve` for train queries drawn at random and
`/feedback` for what the simulated user clicked. Users follow a position-based model: position p
is looked at with probability p^-ETA, a looked-at hit is clicked with probability CLICK_RELEVANT
when the qrels judge its document relevant and CLICK_OTHER when not (noise). An answer nobody
clicked sends no feedback; N counts answers with feedback. After each checkpoint the learner,
Sluice's own code with no access to the qrels, turns the logs into training pairs
(`feedback_training_pairs`, as `sluice train-reranker --from-feedback` does): OUT/pairs-N.jsonl.
It also writes each test query's rerank candidates (OUT/candidates.jsonl).

`train` trains a cross-encoder per checkpoint with `train_cross_encoder` (the CLI's recipe) and
scores the candidates with it (OUT/scores-N.json); it needs only torch, sentence-transformers
and datasets, so it can run where a GPU is. `report` puts those scores through Sluice's own
searcher (the same blend, `sluice eval`'s harness) on the test queries and prints nDCG@10.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ETA = 1.0
CLICK_RELEVANT = 0.8
CLICK_OTHER = 0.1
EXPLORATION = 0.1
CHECKPOINTS = (100, 300, 1000, 3000)
TOP_K = 10
RERANK_CANDIDATES = 30


def _settings(out: Path, name: str) -> Any:
    from config.settings import Settings
    from pipelines.evaluation import eval_alias

    return Settings(
        data_dir=out / "data",
        index_name=eval_alias(name),
        auth="off",
        feedback_exploration=EXPLORATION,
        rerank_candidates=RERANK_CANDIDATES,
    )


def simulate(dataset_dir: Path, out: Path, checkpoints: list[int], seed: int) -> None:
    from fastapi.testclient import TestClient

    from chunking.types import stored_indexed_text
    from composition.components import Components
    from flows.evaluate_flow import index_dataset
    from index.search.cache import normalised_query
    from pipelines.beir import doc_id_from_uri, load_beir
    from retrieval_api.app import create_app
    from sluice.cli.feedback_commands import feedback_training_pairs, load_feedback

    train = load_beir(dataset_dir, split="train")
    test = load_beir(dataset_dir, split="test")
    settings = _settings(out, train.name)
    if settings.data_dir.is_dir():  # start over, but keep the embeddings of the corpus
        for entry in settings.data_dir.iterdir():
            if entry != settings.embedding_cache_dir:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    parts = Components(settings)
    embedder, store = parts.embedder(), parts.store()
    started = time.perf_counter()
    alias, _, _ = index_dataset(train, parts, embedder, store)
    searcher = parts.searcher(store, lambda spec: embedder)
    with (out / "candidates.jsonl").open("w") as candidates:
        for query_id, query in test.queries.items():
            hits = searcher.search(alias, query, "hybrid", limit=RERANK_CANDIDATES).result.hits
            texts = {h.id: stored_indexed_text(h.payload) for h in hits}
            candidates.write(json.dumps({"id": query_id, "query": query, "texts": texts}) + "\n")
    store.close()
    print(f"indexed and wrote candidates in {time.perf_counter() - started:.0f} s", flush=True)
    rng = random.Random(seed)
    judged = [q for q in train.queries if any(train.qrels.get(q, {}).values())]
    by_text = {normalised_query(train.queries[q]): q for q in judged}
    events = answers = 0
    stats = []
    for checkpoint in sorted(checkpoints):
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            while events < checkpoint:
                query_id = rng.choice(judged)
                body = client.post(
                    "/retrieve",
                    json={"query": train.queries[query_id], "mode": "hybrid", "top_k": TOP_K},
                ).json()
                answers += 1
                relevant = {d for d, s in train.qrels[query_id].items() if s > 0}
                items = []
                for hit in body["hits"]:
                    looked = rng.random() < hit["rank"] ** -ETA
                    chance = (
                        CLICK_RELEVANT if doc_id_from_uri(hit["uri"]) in relevant else CLICK_OTHER
                    )
                    if looked and rng.random() < chance:
                        items.append({"chunk_id": hit["chunk_id"], "label": "clicked"})
                if items:
                    event = {
                        "request_id": body["request_id"],
                        "event_id": f"e{events}",
                        "items": items,
                    }
                    assert client.post("/feedback", json=event).status_code == 200
                    events += 1
        _, model, labels = load_feedback(settings, None)
        learnt = [(q, d) for q, entry in labels.items() for d in entry.relevant()]
        true = sum(
            1 for q, d in learnt if train.qrels.get(by_text.get(q, ""), {}).get(doc_id_from_uri(d))
        )
        pairs, queries, _ = feedback_training_pairs(settings, None, negatives=12)
        (out / f"pairs-{checkpoint}.jsonl").write_text(
            "".join(json.dumps(p.__dict__) + "\n" for p in pairs)
        )
        stats.append(
            {
                "events": checkpoint,
                "answers": answers,
                "eta": model.eta,
                "eta_measured": model.measured,
                "explored_answers": model.explored_answers,
                "labelled_queries": len(labels),
                "label_precision": round(true / max(1, len(learnt)), 3),
                "pairs": len(pairs),
                "queries": queries,
            }
        )
        print(json.dumps(stats[-1]), flush=True)
    (out / "simulation.json").write_text(json.dumps(stats, indent=2))


def train(out: Path, checkpoints: list[int], device: str | None, base_model: str) -> None:
    """Needs torch, sentence-transformers and datasets only (no index, no service)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from pipelines.reranker_training import train_cross_encoder
    from pipelines.training_pairs import TrainingPair

    candidates = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    for checkpoint in checkpoints:
        lines = (out / f"pairs-{checkpoint}.jsonl").read_text().splitlines()
        pairs = [TrainingPair(**json.loads(line)) for line in lines]
        started = time.perf_counter()
        model_dir = out / f"reranker-{checkpoint}"
        train_cross_encoder(pairs, model_dir, base_model)
        trained = time.perf_counter() - started
        # This script's own model: its head is Sluice's SegmentSimilarity, importable here.
        model = CrossEncoder(str(model_dir), device=device, trust_remote_code=True)
        scores = {}
        for entry in candidates:
            ids = list(entry["texts"])
            predicted = model.predict([(entry["query"], entry["texts"][i]) for i in ids])
            scores[entry["query"]] = dict(zip(ids, (float(s) for s in predicted), strict=True))
        (out / f"scores-{checkpoint}.json").write_text(
            json.dumps({"training_seconds": trained, "pairs": len(pairs), "scores": scores})
        )
        print(f"N={checkpoint}: {len(pairs)} pairs, trained in {trained:.0f} s", flush=True)


class _ScoredModel:
    """A cross-encoder's scores computed elsewhere, looked up by (query, chunk text)."""

    def __init__(self, scores: dict[str, dict[str, float]], texts: dict[str, str]) -> None:
        self._by_text = {
            (query, texts[chunk_id]): score
            for query, chunks in scores.items()
            for chunk_id, score in chunks.items()
        }

    def predict(self, pairs: list[tuple[str, str]], **_: Any) -> list[float]:
        return [self._by_text[pair] for pair in pairs]


def report(dataset_dir: Path, out: Path, checkpoints: list[int]) -> None:
    from composition.components import Components
    from index.models.reranker import CrossEncoderReranker
    from pipelines.beir import load_beir
    from pipelines.evaluation import evaluate_modes

    test = load_beir(dataset_dir, split="test")
    settings = _settings(out, test.name)
    parts = Components(settings)
    store = parts.store()
    texts = {
        chunk_id: text
        for line in (out / "candidates.jsonl").read_text().splitlines()
        for chunk_id, text in json.loads(line)["texts"].items()
    }
    rows = []
    try:
        hybrid = evaluate_modes(test, parts.searcher(store), settings.index_name, ["hybrid"])
        rows.append({"events": 0, "ndcg@10": round(hybrid["hybrid"]["ndcg@10"], 4)})
        for checkpoint in checkpoints:
            result = json.loads((out / f"scores-{checkpoint}.json").read_text())
            reranker = CrossEncoderReranker(
                "replayed", budget_ms=3.6e6, blend_alpha=settings.rerank_blend
            )
            reranker._model = _ScoredModel(result["scores"], texts)
            searcher = parts.searcher(store, reranker=reranker)
            scores = evaluate_modes(test, searcher, settings.index_name, ["hybrid+rerank"])
            assert not scores["hybrid+rerank"]["degraded_queries"], "every query reranked"
            rows.append(
                {
                    "events": checkpoint,
                    "pairs": result["pairs"],
                    "training_seconds": round(result["training_seconds"]),
                    "ndcg@10": round(scores["hybrid+rerank"]["ndcg@10"], 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        store.close()
    (out / "report.json").write_text(json.dumps(rows, indent=2))
    print("| feedback events | training pairs | training s | hybrid+rerank nDCG@10 |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['events']} | {row.get('pairs', '')} | {row.get('training_seconds', '')} "
            f"| {row['ndcg@10']:.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("simulate", "train", "report"))
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--events", type=int, nargs="+", default=list(CHECKPOINTS))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--device", default=None, help="train: cpu, cuda (default: best)")
    parser.add_argument(
        "--base-model", default="sentence-transformers/all-MiniLM-L6-v2", help="train: start here"
    )
    args = parser.parse_args()
    out = args.out or Path(".bench/feedback") / args.dataset.name
    out.mkdir(parents=True, exist_ok=True)
    if args.phase == "simulate":
        simulate(args.dataset, out, args.events, args.seed)
    elif args.phase == "train":
        train(out, args.events, args.device, args.base_model)
    else:
        report(args.dataset, out, args.events)


if __name__ == "__main__":
    main()
