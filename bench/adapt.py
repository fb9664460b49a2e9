"""`sluice adapt` without labels, measured on the shared collections: dense and hybrid nDCG@10
before and after adapting the embedder to each corpus.

    .venv/bin/python bench/adapt.py prepare ../shared/data/beir/*   # index, baseline, pairs
    .venv/bin/python bench/adapt.py train                           # CPU or GPU
    .venv/bin/python bench/adapt.py report ../shared/data/beir/*    # re-index, score

`prepare` indexes each collection with the packaged model (as `sluice eval` does), scores it,
and makes the pseudo-query pairs from the index (`pipelines.adaptation`, what `sluice adapt`
does; the queries and qrels are never read). `train` fine-tunes the model on each collection's
pairs with `sluice adapt`'s defaults (the top 2 layers, 1 epoch) and keeps only what training
changed, the top layers' weights (so they can come back from a GPU machine). `report` puts them
back into the model, indexes the collection with it and scores it again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE = "sentence-transformers/all-MiniLM-L6-v2"
LAYERS = 2
ROOT = Path(".bench/adapt")


def _settings(name: str) -> Any:
    from config.settings import Settings
    from pipelines.evaluation import eval_alias

    return Settings(data_dir=ROOT / name / "data", index_name=eval_alias(name))


def _scores(dataset: Any, parts: Any, embedder: Any) -> tuple[str, dict[str, float]]:
    """Index the corpus with `embedder`, then dense and hybrid nDCG@10 on the test queries."""
    from flows.evaluate_flow import index_dataset
    from pipelines.evaluation import evaluate_modes

    store = parts.store()
    try:
        alias, _, _ = index_dataset(dataset, parts, embedder, store)
        searcher = parts.searcher(store, lambda spec: embedder)
        modes = evaluate_modes(dataset, searcher, alias, ["dense", "hybrid"])
    finally:
        store.close()
    return alias, {mode: round(scores["ndcg@10"], 4) for mode, scores in modes.items()}


def prepare(folders: list[Path], max_queries: int) -> None:
    from composition.components import Components
    from pipelines.adaptation import adaptation_pairs
    from pipelines.beir import load_beir
    from pipelines.training_pairs import write_pairs

    for folder in folders:
        dataset = load_beir(folder)
        out = ROOT / dataset.name
        out.mkdir(parents=True, exist_ok=True)
        parts = Components(_settings(dataset.name))
        embedder = parts.embedder(BASE)
        started = time.perf_counter()
        alias, baseline = _scores(dataset, parts, embedder)
        store = parts.store()
        try:
            collection = store.resolve_alias(alias)
            assert collection is not None
            payloads = (p.payload for page in store.read_points(collection) for p in page)
            pairs, made = adaptation_pairs(payloads, parts.searcher(store), collection, max_queries)
        finally:
            store.close()
        write_pairs(out / "pairs.jsonl", pairs)
        summary = {"baseline": baseline, "pseudo_queries": made, "chunks_indexed_s": 0.0}
        summary["chunks_indexed_s"] = round(time.perf_counter() - started, 1)
        (out / "prepared.json").write_text(json.dumps(summary, indent=2))
        print(dataset.name, json.dumps(summary), flush=True)


def train(base_model: str, device: str | None) -> None:
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    from pipelines.embedder_training import train_bi_encoder
    from pipelines.training_pairs import read_pairs

    for pairs_file in sorted(ROOT.glob("*/pairs.jsonl")):
        pairs = read_pairs(pairs_file)
        model_dir = Path("/tmp/adapted") / pairs_file.parent.name
        started = time.perf_counter()
        train_bi_encoder(
            pairs, model_dir, base_model, epochs=1.0, batch_size=32, device=device,
            trainable_layers=LAYERS,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        model = SentenceTransformer(str(model_dir), device="cpu")
        base = SentenceTransformer(base_model, device="cpu").state_dict()
        changed = {
            name: tensor.half().contiguous()
            for name, tensor in model.state_dict().items()
            if not tensor.equal(base[name])
        }
        save_file(changed, str(pairs_file.parent / "changed.safetensors"))
        report = {"training_s": round(seconds, 1), "pairs": len(pairs), "tensors": len(changed)}
        (pairs_file.parent / "trained.json").write_text(json.dumps(report))
        print(pairs_file.parent.name, json.dumps(report), flush=True)


def report(folders: list[Path]) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from composition.components import Components
    from index.models.catalog import resolve_model_path
    from pipelines.beir import load_beir

    rows = []
    for folder in folders:
        dataset = load_beir(folder)
        out = ROOT / dataset.name
        prepared = json.loads((out / "prepared.json").read_text())
        trained = json.loads((out / "trained.json").read_text())
        model_dir = out / "adapted"
        model = SentenceTransformer(resolve_model_path(BASE), device="cpu")
        changed = {k: v.float() for k, v in load_file(str(out / "changed.safetensors")).items()}
        model.load_state_dict({**model.state_dict(), **changed})
        shutil.rmtree(model_dir, ignore_errors=True)
        model.save(str(model_dir))
        parts = Components(_settings(dataset.name))
        _, adapted = _scores(dataset, parts, parts.embedder(str(model_dir.resolve())))
        row = {
            "collection": dataset.name,
            "pseudo_queries": prepared["pseudo_queries"],
            "training_s": trained["training_s"],
            **{f"{m} before": prepared["baseline"][m] for m in ("dense", "hybrid")},
            **{f"{m} after": adapted[m] for m in ("dense", "hybrid")},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (ROOT / "report.json").write_text(json.dumps(rows, indent=2))
    print("| collection | title / sentence / span queries | dense before | after | Δ "
          "| hybrid before | after | Δ |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        made = row["pseudo_queries"]
        cells = [row["collection"], f"{made['title']} / {made['ict']} / {made['crop']}"]
        for mode in ("dense", "hybrid"):
            before, after = row[f"{mode} before"], row[f"{mode} after"]
            cells += [f"{before:.4f}", f"{after:.4f}", f"{100 * (after - before):+.2f}"]
        print("| " + " | ".join(cells) + " |")
    for mode in ("dense", "hybrid"):
        delta = sum(r[f"{mode} after"] - r[f"{mode} before"] for r in rows) / len(rows)
        print(f"mean {mode} change: {100 * delta:+.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("prepare", "train", "report"))
    parser.add_argument("datasets", type=Path, nargs="*")
    parser.add_argument("--max-queries", type=int, default=2000)
    parser.add_argument("--base-model", default=BASE)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.phase == "prepare":
        prepare(args.datasets, args.max_queries)
    elif args.phase == "train":
        train(args.base_model, args.device)
    else:
        report(args.datasets)


if __name__ == "__main__":
    main()
