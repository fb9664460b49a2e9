"""What a process pays to embed with the default backend: through sentence-transformers, and
from the export alone (`index.models.exported_model`).

Through sentence-transformers, `SentenceTransformerEmbedder` on OpenVINO imports torch and
transformers, builds the torch model from its weights, then swaps its transformer for the
exported OpenVINO model. From the export alone: the tokenizer saved beside the export with
`tokenizers`, the export with `openvino`, pooling in numpy; what a process does wherever the
export and its tokenizer exist.
Each path runs in a fresh process (its CPU time and peak RSS from import to the first vectors),
alternating; the script prints medians and how far apart the two paths' vectors are.

    .venv/bin/python bench/model_load_paths.py .bench/docs70 --rounds 3

DATA_DIR must hold the OpenVINO int8 export of the packaged MiniLM with its tokenizer (any data
dir that ingested with the default backend; `sluice models --export` makes them).
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

THROUGH_SENTENCE_TRANSFORMERS = """
import json, resource, sys, time
from pathlib import Path
started = time.process_time()
import index.models.embedder as embedder_module
from index.contracts import InferenceBackend
from index.models.embedder import SentenceTransformerEmbedder
embedder_module.load_exported_model = lambda *args: None  # the path taken before the export alone
embedder = SentenceTransformerEmbedder(
    sys.argv[1], "cpu", backend=InferenceBackend("openvino", "int8"), exports_dir=Path(sys.argv[2])
)
vectors = embedder.embed_documents(json.loads(sys.argv[3]))
cpu = time.process_time() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cpu_s": cpu, "rss_mb": rss, "vectors": vectors.tolist()}))
"""

FROM_THE_EXPORT = THROUGH_SENTENCE_TRANSFORMERS.replace(
    "embedder_module.load_exported_model = lambda *args: None", ""
)


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
    paths = {"sentence-transformers": THROUGH_SENTENCE_TRANSFORMERS, "export": FROM_THE_EXPORT}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, code in paths.items():
            runs[name].append(run(code, exports))
    for name, results in runs.items():
        cpu = statistics.median(float(r["cpu_s"]) for r in results)  # type: ignore[arg-type]
        rss = statistics.median(float(r["rss_mb"]) for r in results)  # type: ignore[arg-type]
        print(f"{name:21s}  CPU {cpu:6.2f} s  peak RSS {rss:5.0f} MB  (median of {len(results)})")
    through, export = (np.array(runs[name][0]["vectors"]) for name in paths)
    gap = float(np.abs(through - export).max())
    print(f"largest difference between the two paths' vectors: {gap:.2e}")


if __name__ == "__main__":
    main()
