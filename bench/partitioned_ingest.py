"""A source's ingest split into partitions over Prefect workers, against one unpartitioned run.

Each case starts the loopback topology afresh (tests/topology.py: PostgreSQL for the state and
the Prefect server, the Prefect server, N `prefect worker` processes on one process pool; no API
replica) and runs the source's deployment once with `prefect deployment run --watch`, timed from
the command's start to the flow run's end. Cases: one worker without partitions (the baseline),
one worker with P partitions, two workers with P partitions; with `--dask`, also the P partitions
as tasks on prefect-dask's task runner (two Dask worker processes) inside one flow run
(bench/dask_partitions.py), the alternative way to run them. Prints per case the wall time,
the ratio to the baseline, the documents each worker ran, and the index's documents, chunks and
points (0 lost: documents = files; 0 duplicated: points = the manifest's chunks).

    .venv/bin/python bench/partitioned_ingest.py ../shared/data/beir/scifact [--partitions 4]
        [--worker-limit 3 2]

On one machine two workers share its cores: this measures what partitioning costs, not what
more machines would gain. `--worker-limit` is each worker's `--limit` (default 2; two values:
the 1-worker case's, then the 2-worker case's): a partitioned run's parent holds one slot, so a
single worker at limit 2 runs its partitions one after another and pays each run's start in
series, where at limit 3 it runs two at once, as many as this machine has cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.ingest_throughput import beir_as_files  # noqa: E402
from state.database import StateDatabase  # noqa: E402
from tests.topology import WORKER_LIMIT, loopback_topology  # noqa: E402


def run_case(
    name: str, corpus: Path, base: Path, workers: int, partitions: int, exports: str,
    dask: bool = False, worker_limit: int = WORKER_LIMIT,
) -> dict[str, Any]:  # fmt: skip
    config = base / f"{name}.toml"
    config.write_text(
        f'[[sources]]\ntype = "local"\nname = "corpus"\npath = "{corpus}"\n'
        f"partitions = {partitions}\n"
    )
    workers_started = 0 if dask else workers
    with loopback_topology(
        base / name, config, workers_started, 0, exports, worker_limit
    ) as topology:
        started = time.perf_counter()
        if dask:
            ran = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "dask_partitions.py"), "corpus",
                 "--partitions", str(partitions), "--workers", str(workers)],
                env=topology.env, capture_output=True, text=True, check=False,
            )  # fmt: skip
        else:
            ran = topology.run_deployment("ingest/corpus")
        seconds = time.perf_counter() - started
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        status = json.loads(topology.sluice("status", "--json").stdout)["indexes"]["docs"]
        with StateDatabase.postgres(topology.state_url, "index", "docs").reading() as db:
            documents, chunks = db.execute(
                text("SELECT count(*), sum(chunks) FROM documents")
            ).one()
            parts = db.execute(
                text(
                    "SELECT o.partition, o.external_id, o.pid, o.state, r.report"
                    " FROM run_outcomes o JOIN runs r ON r.run_id = o.run_id"
                    " WHERE o.parent_run_id IS NOT NULL"
                )
            ).all()
        versions = json.loads(topology.sluice("versions", "--json").stdout)["versions"]
        per_worker: dict[str, int] = {}
        for part in parts:
            if part.state != "completed":
                continue
            worker = topology.worker_of(str(part.external_id)) or f"pid {part.pid}"
            per_worker[worker] = per_worker.get(worker, 0) + json.loads(part.report)["new"]
    return {
        "case": name,
        "workers": workers,
        "partitions": partitions,
        "seconds": round(seconds, 1),
        "documents_per_worker": per_worker or {"worker-0": documents},
        "documents": documents,
        "chunks": chunks,
        "points": status["points"],
        "partition_runs": [(p.partition, p.state) for p in parts],
        "collections": [(v["collection"], v["points"], v["serving"]) for v in versions],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("beir", type=Path)
    parser.add_argument("--docs", type=int, default=10**9)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--dask",
        action="store_true",
        help="also the partitions as prefect-dask tasks in one run (needs prefect-dask)",
    )
    parser.add_argument("--only-dask", action="store_true", help="the baseline and Dask only")
    parser.add_argument(
        "--worker-limit",
        type=int,
        nargs="+",
        default=[WORKER_LIMIT],
        help="flow runs at once per worker (`prefect worker start --limit`; the parent of a"
        " partitioned run holds one): one value for both cases, or the 1-worker case's and the"
        " 2-worker case's",
    )
    args = parser.parse_args()
    exports = os.environ.get("SLUICE_MODEL_EXPORTS_DIR", str(ROOT / ".sluice" / "model-exports"))
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        corpus = beir_as_files(args.beir, args.docs, base / "corpus")
        files = len(list(corpus.iterdir()))
        cases = [run_case("unpartitioned", corpus, base, 1, 1, exports)]
        if not args.only_dask:
            cases += [
                run_case(
                    "partitioned-1-worker",
                    corpus,
                    base,
                    1,
                    args.partitions,
                    exports,
                    worker_limit=args.worker_limit[0],
                ),
                run_case(
                    "partitioned-2-workers",
                    corpus,
                    base,
                    2,
                    args.partitions,
                    exports,
                    worker_limit=args.worker_limit[-1],
                ),
            ]
        if args.dask or args.only_dask:
            cases.append(
                run_case("dask-2-processes", corpus, base, 2, args.partitions, exports, True)
            )
    baseline = cases[0]["seconds"]
    print(f"{files} files of {args.beir.name}; --worker-limit {args.worker_limit}")
    print("| case | workers | partitions | wall s | × unpartitioned | documents per worker |"
          " documents | chunks | points |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        print(
            f"| {case['case']} | {case['workers']} | {case['partitions']} | {case['seconds']} | "
            f"{case['seconds'] / baseline:.3f} | {case['documents_per_worker']} | "
            f"{case['documents']} | {case['chunks']} | {case['points']} |"
        )
    for case in cases:  # what a loss would need to be understood
        print(case["case"], case["partition_runs"], case["collections"])
    for case in cases:
        assert case["documents"] == files and case["points"] == case["chunks"], case


if __name__ == "__main__":
    main()
