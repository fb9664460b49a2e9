"""One prepared script for a machine with a GPU: embedding throughput, rerank latency, and a
reranker trained for several epochs, written as JSON.

    .venv/bin/python bench/gpu.py ../shared/data/beir/scifact --out gpu.json
    .venv/bin/python bench/gpu.py DATASET --tiny --out tiny.json     # a CPU check, minutes

1. Embedding: MiniLM (fp16 on CUDA, as `sluice` runs it there) over the corpus at several batch
   sizes: chunks/s, warm (a first pass is discarded), and the peak GPU memory of each.
2. Reranking: 30 (query, passage) pairs of at most 128 tokens per query, ms per query (p50,
   p99) with the packaged MiniLM cross-encoder head (`sluice train-reranker`'s start) and then
   the trained model.
3. Training: `sluice train-reranker` for EPOCHS epochs (the CPU pilot was still improving at
   300 steps), then `sluice eval`-style nDCG@10 of hybrid and hybrid+rerank on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def passages(dataset: Path, limit: int) -> list[str]:
    texts = []
    with (dataset / "corpus.jsonl").open() as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record.get('title', '')}\n{record.get('text', '')}".strip())
            if len(texts) >= limit:
                break
    return texts


def embedding(texts: list[str], batch_sizes: list[int]) -> list[dict[str, Any]]:
    import torch

    from index.models.embedder import SentenceTransformerEmbedder

    rows = []
    for size in batch_sizes:
        embedder = SentenceTransformerEmbedder(
            MODEL, device=device(), batch_size=size, batch_tokens=size * 256
        )
        embedder.max_batch_count = size
        embedder.embed_documents(texts[: size * 2])  # warm: kernels, allocator
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        embedder.embed_documents(texts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        rows.append(
            {
                "batch_size": size,
                "chunks": len(texts),
                "chunks_per_s": len(texts) / seconds,
                "padding_ratio": embedder.padding.ratio,
                "peak_gpu_mib": peak,
                "precision": "fp16" if device() == "cuda" else "fp32",
            }
        )
        print(f"embed batch {size}: {len(texts) / seconds:,.0f} chunks/s", flush=True)
    return rows


def rerank_latency(model: str, queries: list[str], texts: list[str]) -> dict[str, float]:
    from index.models.reranker import load_cross_encoder

    encoder = load_cross_encoder(model, device=device(), max_length=128)
    pairs_of = [[(q, t) for t in texts[n * 30 % len(texts) :][:30]] for n, q in enumerate(queries)]
    encoder.predict(pairs_of[0])  # warm
    times = []
    for pairs in pairs_of:
        started = time.perf_counter()
        encoder.predict(pairs, batch_size=30)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "queries": len(times),
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


def sluice(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a BEIR folder with train and test qrels")
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--tiny", action="store_true", help="small sizes: a check on a CPU")
    parser.add_argument("--epochs", type=float, default=4.0)
    args = parser.parse_args()
    tiny = args.tiny
    sizes = [8, 16] if tiny else [256, 512, 1024, 2048, 4096]
    texts = passages(args.dataset, 64 if tiny else 1_000_000)
    queries = [
        json.loads(line)["text"]
        for line in (args.dataset / "queries.jsonl").read_text().splitlines()[: 3 if tiny else 300]
    ]
    import torch

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "tiny": tiny,
        "embedding": embedding(texts, sizes),
    }
    results["rerank_untrained"] = rerank_latency(MODEL, queries, texts)
    work = Path(tempfile.mkdtemp(prefix="sluice-gpu-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(work / "data"), "SLUICE_PREFECT_SERVER_IDLE_MINUTES": "0"}
    if tiny:  # what `auto` picks on a GPU, without exporting models for OpenVINO on the CPU
        env |= {"SLUICE_EMBEDDING_BACKEND": "torch", "SLUICE_RERANK_BACKEND": "torch"}
    model_dir = work / "reranker"
    train_args = ["train-reranker", str(args.dataset), "--out", str(model_dir)]
    train_args += ["--epochs", str(0.05 if tiny else args.epochs)]
    train_args += ["--batch-size", "4" if tiny else "16"]
    if tiny:
        train_args += ["--max-queries", "4", "--negatives", "2"]
    started = time.perf_counter()
    results["training"] = {**sluice(*train_args, env=env), "seconds": time.perf_counter() - started}
    results["rerank_trained"] = rerank_latency(str(model_dir), queries, texts)
    eval_args = ["eval", str(args.dataset), "--mode", "hybrid"]
    if tiny:
        eval_args += ["--max-docs", "64"]
    results["eval_hybrid"] = sluice(*eval_args, env=env)["modes"]
    results["eval_hybrid_rerank"] = sluice(
        *eval_args,
        env={**env, "SLUICE_RERANKER_MODEL": str(model_dir), "SLUICE_RERANK_DEFAULT": "true"},
    )["modes"]
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
