"""Query embedding from many threads at once: three ways to share one model, side by side.

    .venv/bin/python bench/inference_concurrency.py [--backend openvino-int8] [--seconds 10]

- `lock`: what `SentenceTransformerEmbedder` does: one call into the model (and its tokenizer)
  at a time; every other part of a request runs in parallel with it.
- `batching`: a queue whose one worker thread takes every query waiting and embeds them in one
  call (the micro-batching of TEI and Triton), then hands each caller its row.
- `per-thread`: each thread its own tokenizer copy and its own OpenVINO infer request on the one
  compiled model (OpenVINO's `AsyncInferQueue` idea); OpenVINO backends only.

For each, N threads embed distinct queries back to back for `--seconds`; the table gives queries
per second, p50/p99 latency, and how many vectors differ from the same query embedded alone
(bit for bit, and the largest absolute difference).
"""

from __future__ import annotations

import argparse
import copy
import queue
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from index.contracts import InferenceBackend
from index.models.embedder import SentenceTransformerEmbedder
from index.models.exports import openvino_without_telemetry

QUERIES = [
    f"{a} {b}"
    for a in ("how to", "why does", "where is", "what is")
    for b in (
        "the kernel module loading",
        "package management with apt",
        "a regular expression",
        "an encrypted PDF attachment",
        "the security update policy",
        "the stable release cycle",
        "json encoding of a table",
        "a mailing list etiquette guide",
        "the boot loader config",
        "right to left text in a document",
    )
]


class Batching:
    """One worker embeds every query waiting, in one call."""

    def __init__(self, embedder: SentenceTransformerEmbedder, most: int = 64) -> None:
        self.embedder, self.most = embedder, most
        self.waiting: queue.Queue[tuple[str, Future[np.ndarray]]] = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        while True:
            batch = [self.waiting.get()]
            while len(batch) < self.most:
                try:
                    batch.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            vectors = self.embedder._encode([q for q, _ in batch], self.embedder.query_prefix)
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

    def embed(self, query: str) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        self.waiting.put((query, future))
        return future.result()


class PerThread:
    """A tokenizer copy and an infer request per thread, on one compiled model."""

    def __init__(self, embedder: SentenceTransformerEmbedder) -> None:
        self.embedder = embedder
        self.local = threading.local()
        model = embedder.model  # loaded through sentence-transformers: its modules
        self.transformer, self.pooling = model[0], model[1]
        self.runtime = self.transformer.model  # index.models.runtime_model.RuntimeModel
        hint = {"PERFORMANCE_HINT": "LATENCY"}
        ov = openvino_without_telemetry()
        self.compiled = ov.Core().compile_model(str(self.runtime.path), "CPU", hint)

    def embed(self, query: str) -> np.ndarray:
        import torch

        local = self.local
        if not hasattr(local, "request"):
            local.request = self.compiled.create_infer_request()
            local.tokenizer = copy.deepcopy(self.transformer.tokenizer)
        features = local.tokenizer(
            [self.embedder.query_prefix + query],
            padding=True,
            truncation="longest_first",
            max_length=self.transformer.max_seq_length,
            return_tensors="pt",
        )
        feed = {name: features[name].numpy() for name in self.runtime.inputs}
        hidden = torch.from_numpy(local.request.infer(feed)[0].copy())
        pooled = self.pooling(
            {"token_embeddings": hidden, "attention_mask": features["attention_mask"]}
        )
        vector = torch.nn.functional.normalize(pooled["sentence_embedding"], dim=1)
        return vector[0].numpy()


def _run(embed: Callable[[str], np.ndarray], threads: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    answers: list[tuple[str, np.ndarray]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            query = QUERIES[i % len(QUERIES)]
            started = time.perf_counter()
            vector = embed(query)
            with lock:
                latencies.append(time.perf_counter() - started)
                answers.append((query, vector))
            i += 3

    workers = [threading.Thread(target=client, args=(n * 7,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "qps": len(ordered) / wall,
        "p50": 1000 * statistics.median(ordered),
        "p99": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="openvino-int8")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--exports", type=Path, default=Path(".bench/model-exports"))
    args = parser.parse_args()
    backend = InferenceBackend.from_label(args.backend)
    embedder = SentenceTransformerEmbedder(
        "sentence-transformers/all-MiniLM-L6-v2", "cpu", backend=backend, exports_dir=args.exports
    )
    embedder.warm_up()
    alone = {q: embedder.embed_query(q) for q in QUERIES}
    ways: dict[str, Callable[[str], np.ndarray]] = {
        "lock": embedder.embed_query,
        "batching": Batching(embedder).embed,
    }
    if backend.name == "openvino":
        import index.models.embedder as embedder_module

        through = SentenceTransformerEmbedder(
            "sentence-transformers/all-MiniLM-L6-v2",
            "cpu",
            backend=backend,
            exports_dir=args.exports,
        )
        embedder_module.load_exported_model = lambda *args: None  # type: ignore[attr-defined]
        through.warm_up()
        ways["per-thread"] = PerThread(through).embed
    print(f"backend {backend.label}, {args.seconds:g} s per row")
    print("| way | threads | queries/s | p50 ms | p99 ms | vectors not bit-equal | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        for name, embed in ways.items():
            figures = _run(embed, threads, args.seconds)
            unequal = [v for q, v in figures["answers"] if not np.array_equal(v, alone[q])]
            worst = max(
                (float(np.abs(v - alone[q]).max()) for q, v in figures["answers"]), default=0.0
            )
            print(
                f"| {name} | {threads} | {figures['qps']:.0f} | {figures['p50']:.2f} "
                f"| {figures['p99']:.2f} | {len(unequal)} of {len(figures['answers'])} "
                f"| {worst:.2e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
