"""Re-embedding: the gate's two scores for a better and a worse model, and throughput.

    .venv/bin/python bench/reembed.py ../shared/data/beir/scifact --max-docs 2000

No other embedding model can be downloaded here, so the models are derived from the packaged
all-MiniLM-L6-v2 (in `--models`, reused when present):
- `minilm-scifact`: fine-tuned as a bi-encoder on SciFact's *train* queries (in-batch negatives,
  `MultipleNegativesRankingLoss`); the gate evaluates on the *test* queries.
- `minilm-weak`: its word embeddings shuffled (tests/derived_models.py), a model that must fail.

Then, in a fresh data dir: an index of the dataset's corpus (a slice of `--max-docs` documents,
judged ones first), its test queries as the golden set, `reembed` to each model, and bare
`model.encode` over the same chunk texts for the throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composition.components import Components
from config.runtime import prepare_process
from config.settings import Settings
from flows.evaluate_flow import index_dataset
from flows.reembed_flow import run_reembed
from index.models.catalog import resolve_model_path
from index.models.embedder import SentenceTransformerEmbedder
from pipelines.beir import BeirDataset, load_beir
from pipelines.evaluation import eval_alias
from tests.derived_models import weakened

BASE = "sentence-transformers/all-MiniLM-L6-v2"


def finetune(dataset: BeirDataset, into: Path, epochs: int, batch_size: int) -> float:
    """Seconds to fine-tune the packaged model on (query, judged document) pairs."""
    from datasets import Dataset
    from sentence_transformers import (  # type: ignore[attr-defined]
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    started = time.perf_counter()
    model = SentenceTransformer(resolve_model_path(BASE), device="cpu")
    model.max_seq_length = 256
    anchors, positives = [], []
    for query_id, judged in dataset.qrels.items():
        for doc_id, score in judged.items():
            if score > 0 and doc_id in dataset.corpus:
                title, text = dataset.corpus[doc_id]
                anchors.append(dataset.queries[query_id])
                positives.append(f"{title}\n\n{text}" if title else text)
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(into / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=2e-5,
        warmup_ratio=0.1,
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        use_cpu=True,
        seed=13,
    )
    SentenceTransformerTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_dict({"anchor": anchors, "positive": positives}),
        loss=losses.MultipleNegativesRankingLoss(model),
    ).train()
    model.save(str(into))
    return time.perf_counter() - started


def golden_file(dataset: BeirDataset, path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"query": dataset.queries[q], "relevant": sorted(judged)}) + "\n"
            for q, judged in dataset.qrels.items()
        )
    )
    return path


def bare_encode_per_s(model: str, texts: list[str], batch_size: int, repeats: int) -> float:
    embedder = Components(Settings(embedding_batch_size=batch_size)).embedder(model)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    embedder.embed_documents(texts[:64])
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.model.encode(
            [embedder.passage_prefix + t for t in texts],
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        timings.append(time.perf_counter() - started)
    return len(texts) / statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path, help="BEIR folder with train and test qrels")
    parser.add_argument("--max-docs", type=int, default=2000)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="bare encode repetitions")
    args = parser.parse_args()
    prepare_process(Path(tempfile.gettempdir()) / "sluice-bench-prefect")

    tuned = args.models / "minilm-scifact"
    if not (tuned / "config.json").is_file():
        seconds = finetune(
            load_beir(args.dataset, split="train"), tuned, args.epochs, args.batch_size
        )
        print(f"fine-tuned {tuned} in {seconds:.0f} s", flush=True)
    weak = args.models / "minilm-weak"
    if not (weak / "config.json").is_file():
        weakened(weak)

    dataset = load_beir(args.dataset, max_docs=args.max_docs)
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-reembed-"))
    settings = Settings(
        data_dir=data_dir,
        index_name=eval_alias(dataset.name),
        golden_set=golden_file(dataset, data_dir / "golden.jsonl"),
    )
    embedder, store = Components(settings).embedder(), Components(settings).store()
    try:
        started = time.perf_counter()
        alias, _, chunks = index_dataset(dataset, Components(settings), embedder, store)
        print(
            f"indexed {len(dataset.corpus)} documents, {chunks} chunks in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        texts = [
            (f"{p['context']}\n\n{p['text']}" if p.get("context") else str(p["text"]))
            for _, p in store.scroll(store.resolve_alias(alias) or "", ["context", "text"])
        ]
    finally:
        store.close()

    rows: list[dict[str, Any]] = []
    for model in (str(tuned), str(weak)):
        report = run_reembed(settings, model)
        build_rate = report.points / report.seconds["build"]
        embed_rate = report.embedded / report.embed_seconds
        # Throughput is compared once, on the first model (the second is the same architecture).
        bare = (
            bare_encode_per_s(model, texts, settings.embedding_batch_size, args.repeats)
            if not rows
            else float("nan")
        )
        row = {
            "model": Path(model).name,
            "outcome": report.outcome,
            "gate": report.gate,
            "points": report.points,
            "embedded": report.embedded,
            "build_s": report.seconds["build"],
            "gate_s": report.seconds["gate"],
            "total_s": report.seconds["total"],
            "reembed_points_per_s": round(build_rate, 1),
            "embed_stage_per_s": round(embed_rate, 1),
            "bare_encode_per_s": round(bare, 1),
            "ratio_build": round(build_rate / bare, 3),
            "ratio_embed_stage": round(embed_rate / bare, 3),
            "scores": report.scores,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        "\n| model | outcome | gate old | gate new | points | build s | re-embed/s | bare/s"
        " | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        gate: Any = row["gate"] or {}
        print(
            f"| {row['model']} | {row['outcome']} | {gate.get('old', 0):.4f} | "
            f"{gate.get('new', 0):.4f} | {row['points']} | {row['build_s']} | "
            f"{row['reembed_points_per_s']} | {row['bare_encode_per_s']} | {row['ratio_build']} |"
        )


if __name__ == "__main__":
    main()
