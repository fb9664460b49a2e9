"""What a process pays to embed with the default backend: today's path against a lean one.

Today `SentenceTransformerEmbedder` on OpenVINO imports sentence-transformers (with torch and
transformers), builds the torch model from its weights, then swaps its transformer for the
exported OpenVINO model. The lean path a process could take instead: the model's `tokenizer.json`
with `tokenizers`, the exported model with `openvino`, mean pooling and normalising in numpy.
Each path runs in a fresh process (its CPU time and peak RSS from import to the first vectors),
alternating; the script prints medians and how far the lean vectors are from today's.

    .venv/bin/python bench/model_load_paths.py .bench/docs70 --rounds 3

DATA_DIR must hold the OpenVINO int8 export of the packaged MiniLM (any data dir that ingested
with the default backend). A prototype for measuring, not a second embedder: it knows only
MiniLM's modules (Transformer, mean Pooling, Normalize).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "The impeller of a centrifugal pump wears and loses pressure.",
    "Solar panels charge the batteries; an inverter makes current.",
    "short",
]

TODAY = """
import json, resource, sys, time
from pathlib import Path
started = time.process_time()
from index.contracts import InferenceBackend
from index.models.embedder import SentenceTransformerEmbedder
embedder = SentenceTransformerEmbedder(
    sys.argv[1], "cpu", backend=InferenceBackend("openvino", "int8"), exports_dir=Path(sys.argv[2])
)
vectors = embedder.embed_documents(json.loads(sys.argv[3]))
cpu = time.process_time() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cpu_s": cpu, "rss_mb": rss, "vectors": vectors.tolist()}))
"""

LEAN = """
import json, resource, sys, time
from pathlib import Path
started = time.process_time()
import numpy as np
import openvino as ov
from tokenizers import Tokenizer
from index.models.catalog import resolve_model_path
folder = Path(resolve_model_path(sys.argv[1]))
export = next(Path(sys.argv[2]).glob("*openvino-int8*/model.xml"))
limit = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
tokenizer.enable_truncation(limit)
tokenizer.enable_padding()
model = ov.Core().compile_model(str(export), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
encoded = tokenizer.encode_batch(json.loads(sys.argv[3]))
feed = {
    "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
    "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
}
tokens = model({i.get_any_name(): feed[i.get_any_name()] for i in model.inputs})[0]
mask = feed["attention_mask"][..., None].astype(np.float32)
vectors = (tokens * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
cpu = time.process_time() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cpu_s": cpu, "rss_mb": rss, "vectors": vectors.tolist()}))
"""


def run(code: str, exports: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, MODEL, str(exports), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exports = args.data_dir / "model-exports"
    runs: dict[str, list[dict[str, object]]] = {"today": [], "lean": []}
    for _ in range(args.rounds):
        runs["today"].append(run(TODAY, exports))
        runs["lean"].append(run(LEAN, exports))
    for name, results in runs.items():
        cpu = statistics.median(float(r["cpu_s"]) for r in results)  # type: ignore[arg-type]
        rss = statistics.median(float(r["rss_mb"]) for r in results)  # type: ignore[arg-type]
        print(f"{name:5s}  CPU {cpu:6.2f} s  peak RSS {rss:5.0f} MB  (median of {len(results)})")
    today, lean = (np.array(runs[name][0]["vectors"]) for name in ("today", "lean"))
    gap = float(np.abs(today - lean).max())
    print(f"largest difference between the two paths' vectors: {gap:.2e}")


if __name__ == "__main__":
    main()
