"""Learning from clicks, simulated honestly: simulated users read Sluice's own answers, click
with position bias and noise, and Sluice trains a reranker from what they did.

    .venv/bin/python bench/feedback_loop.py simulate ../shared/data/beir/scifact
    .venv/bin/python bench/feedback_loop.py train ../shared/data/beir/scifact   # CPU or GPU
    .venv/bin/python bench/feedback_loop.py report ../shared/data/beir/scifact

`simulate` indexes the corpus, serves it (the real app, `SLUICE_FEEDBACK_EXPLORATION` 0.1), and
for each checkpoint N of feedback events sends `/retrieve` (hybrid, top 10) for users' queries
drawn at random and `/feedback` for what the simulated user clicked. Users follow a position-based
model: position p is looked at with probability p^-ETA, a looked-at hit is clicked with
probability CLICK_RELEVANT when the qrels judge its document relevant and CLICK_OTHER when not
(noise). An answer nobody clicked sends no feedback; N counts answers with feedback. At each
checkpoint the learner, Sluice's own code with no access to the qrels, turns the logs into
training pairs as `sluice train-reranker --from-feedback` does (OUT/pairs-0000N.jsonl), and the
bench reports what it learnt against the truth (η, click noise, the labels' precision). It also
writes the reference pairs mined from the qrels themselves (OUT/pairs-qrels.jsonl), at each
checkpoint a control (OUT/pairs-qrels-of-0000N.jsonl: those pairs, restricted to the queries the
learner had pairs for: perfect labels on the same queries), and the candidates `sluice eval`
reranks for each measured query, recorded from its own harness (OUT/candidates.jsonl). Users'
queries are the train split; a dataset without one (NFCorpus here) has its test queries halved
by a stable hash, users asking one half and the other measured.

`relabel` runs the learner again on a finished simulation's logs (`--heldout-too`: the pairs of
every query, OUT/pairs-N+heldout.jsonl, what a refit after the gate would train on).

`train` trains a cross-encoder on each pairs file with `train_cross_encoder` (the CLI's recipe)
and scores the candidates with it (OUT/scores-NAME.json); it needs only torch,
sentence-transformers and datasets, so it can run where a GPU is. `report` replays those scores
through Sluice's own searcher (`sluice eval`'s harness and blend) and prints nDCG@10.
"""

from __future__ import annotations

import argparse
import hashlib
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


def splits(dataset_dir: Path) -> tuple[Any, Any]:
    """The queries simulated users ask (the train split) and those measured (the test split).
    A dataset without a train split (NFCorpus here) has its test queries halved by a stable hash
    of their ids: users ask one half, the other is measured."""
    from dataclasses import replace

    from pipelines.beir import load_beir

    test = load_beir(dataset_dir, split="test")
    if (dataset_dir / "qrels" / "train.tsv").is_file():
        return load_beir(dataset_dir, split="train"), test
    halves: dict[bool, list[str]] = {True: [], False: []}
    for query_id in test.queries:
        halves[hashlib.sha256(query_id.encode()).digest()[0] % 2 == 0].append(query_id)

    def part(ids: list[str]) -> Any:
        return replace(
            test,
            queries={q: test.queries[q] for q in ids},
            qrels={q: test.qrels[q] for q in ids},
        )

    return part(halves[True]), part(halves[False])


class _CandidateRecorder:
    """A reranker that only writes down what it is asked to rerank, then declines."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, str]] = {}

    def warm_up(self) -> None: ...

    def warm_up_in_background(self) -> None: ...

    def is_loading(self) -> bool:
        return False

    def rerank(self, query: str, candidates: list[Any], blend: float | None = None) -> list[Any]:
        from chunking.types import stored_indexed_text
        from index.contracts import RerankSkipped

        self.seen[query] = {p.id: stored_indexed_text(p.payload) for p in candidates}
        raise RerankSkipped("recorded")


def simulate(dataset_dir: Path, out: Path, checkpoints: list[int], seed: int) -> None:
    from fastapi.testclient import TestClient

    from composition.components import Components
    from flows.evaluate_flow import index_dataset
    from pipelines.beir import doc_id_from_uri
    from pipelines.evaluation import retrieve_run
    from pipelines.training_pairs import mine_pairs, write_pairs
    from retrieval_api.app import create_app
    from sluice.cli.feedback_commands import load_feedback

    train, test = splits(dataset_dir)
    settings = _settings(out, train.name)
    if settings.data_dir.is_dir():  # start over, but keep the embeddings of the corpus
        for entry in settings.data_dir.iterdir():
            if entry != settings.embedding_cache_dir:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    parts = Components(settings)
    embedder, store = parts.embedder(), parts.store()
    started = time.perf_counter()
    alias, _, _ = index_dataset(train, parts, embedder, store)
    recorder = _CandidateRecorder()
    searcher = parts.searcher(store, lambda spec: embedder, reranker=recorder)  # type: ignore[arg-type]
    retrieve_run(searcher, alias, test.queries, "hybrid+rerank")  # what `sluice eval` reranks
    with (out / "candidates.jsonl").open("w") as candidates:
        for query, texts in recorder.seen.items():
            candidates.write(json.dumps({"query": query, "texts": texts}) + "\n")
    # The reference: pairs mined from the qrels themselves (`sluice train-reranker`'s way).
    reference = mine_pairs(train, parts.searcher(store, lambda spec: embedder), alias, 12)
    write_pairs(out / "pairs-qrels.jsonl", reference)
    store.close()
    print(f"indexed, candidates and qrels pairs in {time.perf_counter() - started:.0f} s")
    rng = random.Random(seed)
    judged = [q for q in train.queries if any(train.qrels.get(q, {}).values())]
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
        found, _ = load_feedback(settings, None)
        stats.append(_learn(settings, train, found, out, checkpoint) | {"answers": answers})
        print(json.dumps(stats[-1]), flush=True)
    (out / "simulation.json").write_text(json.dumps(stats, indent=2))


def _learn(
    settings: Any, train: Any, found: list[Any], out: Path, checkpoint: int, every: bool = False
) -> dict[str, Any]:
    """What the learner makes of these answers (Sluice's own code, as `sluice train-reranker
    --from-feedback`): its training pairs written to OUT/pairs-N.jsonl, and what it learnt
    measured against the qrels it never saw. `every`: pairs of the held-out queries too
    (OUT/pairs-N+heldout.jsonl), as a refit on all the feedback once the gate has passed."""
    from index.search.cache import normalised_query
    from pipelines.beir import doc_id_from_uri
    from pipelines.feedback_labels import NEGATIVE_CEILING, learn_labels
    from pipelines.training_pairs import read_pairs, write_pairs
    from sluice.cli.feedback_commands import pairs_from_feedback

    by_text = {normalised_query(text): q for q, text in train.queries.items()}
    labels = learn_labels(found)

    def truth(query: str, doc_id: str) -> bool:
        return bool(train.qrels.get(by_text.get(query, ""), {}).get(doc_id_from_uri(doc_id)))

    learnt = [(q, d) for q in labels.queries for d in labels.relevant(q)]
    true = sum(1 for q, d in learnt if truth(q, d))
    passed_over = [  # hits passed over above a click: the first negatives, unless uncertain
        (labels.probability(i.query, d) < NEGATIVE_CEILING, truth(i.query, d))
        for i in found
        for position, d in enumerate(i.doc_ids[:TOP_K], start=1)
        if position < max(i.clicked, default=0) and position not in i.clicked
    ]
    kept = [relevant for allowed, relevant in passed_over if allowed]
    pairs = pairs_from_feedback(settings, found, labels, 12, None if every else "train")
    write_pairs(out / f"pairs-{checkpoint:05d}{'+heldout' if every else ''}.jsonl", pairs)
    reference = out / "pairs-qrels.jsonl"
    if reference.exists() and not every:  # the control: perfect labels on the same queries
        asked = {normalised_query(p.query) for p in pairs}
        same = [p for p in read_pairs(reference) if normalised_query(p.query) in asked]
        write_pairs(out / f"pairs-qrels-of-{checkpoint:05d}.jsonl", same)
    noise = labels.noise
    return {
        "events": checkpoint,
        "eta": labels.model.eta,
        "eta_measured": labels.model.measured,
        "explored_answers": labels.model.explored_answers,
        "click_noise": {k: round(v, 3) for k, v in vars(noise).items()},
        "prior_at_10": round(noise.prior_at(10), 3),
        "labelled_queries": len({q for q, _ in learnt}),
        "label_precision": round(true / max(1, len(learnt)), 3),
        "passed_over_relevant": round(sum(r for _, r in passed_over) / max(1, len(passed_over)), 3),
        "passed_over_kept_relevant": round(sum(kept) / max(1, len(kept)), 3),
        "pairs": len(pairs),
        "queries": len({p.query for p in pairs}),
    }


def relabel(dataset_dir: Path, out: Path, checkpoints: list[int], every: bool) -> None:
    """The learner run again on a finished simulation's logs (after a change to the learner):
    at each checkpoint N, the oldest N answers with feedback, which is what it saw then.
    `every`: the held-out queries' pairs too, beside the others (the simulation's record kept)."""
    from sluice.cli.feedback_commands import load_feedback

    train, _ = splits(dataset_dir)
    settings = _settings(out, train.name)
    found, _ = load_feedback(settings, None)  # newest first
    found.reverse()
    previous = {s["events"]: s for s in json.loads((out / "simulation.json").read_text())}
    stats = []
    for checkpoint in sorted(checkpoints):
        if checkpoint > len(found):
            raise SystemExit(f"the logs hold {len(found)} answers with feedback, not {checkpoint}")
        answers = previous.get(checkpoint, {}).get("answers")
        stats.append(
            _learn(settings, train, found[:checkpoint], out, checkpoint, every)
            | {"answers": answers}
        )
        print(json.dumps(stats[-1]), flush=True)
    if not every:
        (out / "simulation.json").write_text(json.dumps(stats, indent=2))


def train(
    out: Path, device: str | None, base_model: str, only: list[str] | None, epochs: float
) -> None:
    """Needs torch, sentence-transformers and datasets only (no index, no service). `only`:
    these pairs files (e.g. 01000, qrels), else every one; `epochs` other than the CLI's 1.5
    names the outputs NAME@EPOCHSep."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from pipelines.reranker_training import LABELLED_EPOCHS, train_cross_encoder
    from pipelines.training_pairs import read_pairs

    candidates = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    for pairs_file in sorted(out.glob("pairs-*.jsonl")):
        name = pairs_file.stem.removeprefix("pairs-")
        if only and name not in only:
            continue
        pairs = read_pairs(pairs_file)
        started = time.perf_counter()
        name += "" if epochs == LABELLED_EPOCHS else f"@{epochs:g}ep"
        model_dir = out / f"reranker-{name}"
        train_cross_encoder(pairs, model_dir, base_model, epochs=epochs)
        trained = time.perf_counter() - started
        # This script's own model: its head is Sluice's SegmentSimilarity, importable here.
        model = CrossEncoder(str(model_dir), device=device, trust_remote_code=True)
        scores = {}
        for entry in candidates:
            ids = list(entry["texts"])
            predicted = model.predict([(entry["query"], entry["texts"][i]) for i in ids])
            scores[entry["query"]] = dict(zip(ids, (float(s) for s in predicted), strict=True))
        (out / f"scores-{name}.json").write_text(
            json.dumps({"training_seconds": trained, "pairs": len(pairs), "scores": scores})
        )
        print(f"{name}: {len(pairs)} pairs, trained in {trained:.0f} s", flush=True)


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


def _trained_on(name: str) -> str:
    """A pairs file's name as a row's label: 01000, qrels, qrels-of-01000, 01000+corpus@3ep."""
    name, _, epochs = name.partition("@")
    pairs, _, extra = name.partition("+")
    label = pairs
    if pairs.isdigit():
        label = f"{int(pairs)} feedback events"
    elif pairs.startswith("qrels-of-"):
        label = f"the qrels of the {int(pairs.removeprefix('qrels-of-'))}-event run's queries"
    label += {"corpus": " + corpus pseudo-queries", "heldout": ", held-out queries too"}.get(
        extra, ""
    )
    return label + (f", {epochs.removesuffix('ep')} epochs" if epochs else "")


BLENDS = (0.7, 0.5, 0.3)
"""The default first (chosen before any of this), then lower weights for a weak reranker."""


def report(dataset_dir: Path, out: Path) -> None:
    """nDCG@10 on the measured queries: hybrid, then hybrid+rerank with each trained model, its
    scores replayed through Sluice's own searcher (the same candidates, the same blend)."""
    from composition.components import Components
    from index.contracts import HybridOptions
    from index.models.reranker import CrossEncoderReranker
    from pipelines.evaluation import evaluate_modes

    _, test = splits(dataset_dir)
    settings = _settings(out, test.name)
    parts = Components(settings)
    store = parts.store()
    texts = {
        chunk_id: text
        for line in (out / "candidates.jsonl").read_text().splitlines()
        for chunk_id, text in json.loads(line)["texts"].items()
    }
    rows: list[dict[str, Any]] = []
    try:
        hybrid = evaluate_modes(test, parts.searcher(store), settings.index_name, ["hybrid"])
        rows.append({"trained on": "(hybrid alone)", "ndcg@10": hybrid["hybrid"]["ndcg@10"]})
        for scores_file in sorted(out.glob("scores-*.json")):
            result = json.loads(scores_file.read_text())
            reranker = CrossEncoderReranker("replayed", budget_ms=3.6e6)
            reranker._model = _ScoredModel(result["scores"], texts)
            searcher = parts.searcher(store, reranker=reranker)
            name = scores_file.stem.removeprefix("scores-")
            row: dict[str, Any] = {
                "trained on": _trained_on(name),
                "pairs": result["pairs"],
                "training_s": round(result["training_seconds"]),
            }
            for blend in BLENDS:
                options = HybridOptions(rerank_blend=blend)
                mode = evaluate_modes(
                    test, searcher, settings.index_name, ["hybrid+rerank"], options
                )
                assert not mode["hybrid+rerank"]["degraded_queries"], "every query reranked"
                row[f"blend {blend}"] = mode["hybrid+rerank"]["ndcg@10"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        store.close()
    (out / "report.json").write_text(json.dumps(rows, indent=2))
    columns = ["trained on", "pairs", "training_s", *(f"blend {b}" for b in BLENDS)]
    print(f"{test.name}: nDCG@10 on {len(test.queries)} queries")
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    for row in rows:
        cells = [row.get(c, "") for c in columns]
        if "ndcg@10" in row:
            cells[3] = row["ndcg@10"]
        print(
            "| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("simulate", "relabel", "train", "report"))
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--events", type=int, nargs="+", default=list(CHECKPOINTS))

    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--heldout-too", action="store_true", help="relabel: pairs of every query (a refit)"
    )
    parser.add_argument("--only", nargs="+", default=None, help="train: these pairs (01000 …)")
    parser.add_argument("--device", default=None, help="train: cpu, cuda (default: best)")
    from pipelines.reranker_training import LABELLED_EPOCHS

    parser.add_argument("--epochs", type=float, default=LABELLED_EPOCHS, help="train: passes")
    parser.add_argument(
        "--base-model", default="sentence-transformers/all-MiniLM-L6-v2", help="train: start here"
    )
    args = parser.parse_args()
    out = args.out or Path(".bench/feedback") / args.dataset.name
    out.mkdir(parents=True, exist_ok=True)
    if args.phase == "simulate":
        simulate(args.dataset, out, args.events, args.seed)
    elif args.phase == "relabel":
        relabel(args.dataset, out, args.events, args.heldout_too)
    elif args.phase == "train":
        train(out, args.device, args.base_model, args.only, args.epochs)
    else:
        report(args.dataset, out)


if __name__ == "__main__":
    main()
