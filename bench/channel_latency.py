"""Searches through the shard channel against searches in the owner's process.

    .venv/bin/python bench/channel_latency.py DATA_DIR [--index docs] [--rounds 3] [--retrieve]

DATA_DIR holds an index (`bench/ingest_docs.sh`). This process opens the store (so owns the
shards) and times the searches `/retrieve` makes for a hybrid query (both candidate lists, 200
each, without payloads, then the fused top 10's payloads by id) for 40 query vectors; a second
process, a client of this one, times the same calls over the channel. Rounds alternate owner and
client; the table gives p50 and p99 per side and their ratio (target ≤ 1.2× at p50).

`--retrieve` measures what an application sees instead: two `sluice serve` processes on a copy
of DATA_DIR, the first owning the shards and the second its client, the same hybrid
`/retrieve` requests (caches and the query log off) sent one at a time to each in turn.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUND = 200


def _requests(store: Any, alias: str) -> tuple[str, list[Any], list[list[str]]]:
    from index.contracts import SearchRequest, SparseVector

    collection: str = store.resolve_alias(alias)
    assert collection, f"no index {alias}"
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    requests = [
        SearchRequest(
            mode="hybrid",
            limit=10,
            candidate_pool=200,
            dense=vector,
            sparse=SparseVector([int(i) for i in rng.integers(0, 2**31, 4)], [1.0] * 4),
            candidate_payloads=False,
        )
        for vector in vectors
    ]
    ids = [[p.id for p in store.search(collection, r).dense[:10]] for r in requests]
    return collection, requests, ids


def _time(store: Any, alias: str) -> list[float]:
    collection, requests, ids = _requests(store, alias)
    seconds = []
    for n in range(ROUND):
        started = time.perf_counter()
        store.search(collection, requests[n % len(requests)])
        store.fetch(collection, ids[n % len(ids)])
        seconds.append(time.perf_counter() - started)
    return seconds


def client(path: str, alias: str) -> None:
    from index.store.shared import SharedEdgeStore

    store = SharedEdgeStore(Path(path))
    assert store.role == "client"
    print(json.dumps(_time(store, alias)))
    store.close()


def _retrieve(data_dir: Path, rounds: int) -> None:
    import shutil
    import tempfile

    import httpx

    from bench.concurrency import QUERIES, _serve

    copy = Path(tempfile.mkdtemp(prefix="sluice-channel-")) / "data"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("owner.*"))
    owner, owner_url = _serve(copy, None, rerank=False)
    client, client_url = _serve(copy, None, rerank=False)  # started second: the client
    sides: dict[str, list[float]] = {"owner": [], "client": []}
    try:
        with httpx.Client(timeout=60) as http:
            for url in (owner_url, client_url):
                assert http.get(f"{url}/health").status_code == 200
            for _ in range(rounds):
                for n in range(ROUND):
                    body = {"query": QUERIES[n % len(QUERIES)], "mode": "hybrid", "top_k": 10}
                    for side, url in (("owner", owner_url), ("client", client_url)):
                        started = time.perf_counter()
                        http.post(f"{url}/retrieve", json=body).raise_for_status()
                        sides[side].append(time.perf_counter() - started)
    finally:
        for server in (client, owner):
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(copy.parent, ignore_errors=True)
    _report(sides)


def _report(sides: dict[str, list[float]]) -> None:
    print("| side | searches | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    p50 = {}
    for side, seconds in sides.items():
        ms = np.array(seconds) * 1000
        p50[side] = float(np.percentile(ms, 50))
        print(f"| {side} | {len(ms)} | {p50[side]:.2f} | {np.percentile(ms, 99):.2f} |")
    print(f"\nclient / owner at p50: {p50['client'] / p50['owner']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--index", default="docs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--retrieve", action="store_true", help="two APIs, /retrieve")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.retrieve:
        _retrieve(args.data_dir.resolve(), args.rounds)
        return
    if args.client:
        client(args.client, args.index)
        return
    from index.store.shared import SharedEdgeStore

    path = args.data_dir.resolve() / "qdrant"
    owner = SharedEdgeStore(path)
    assert owner.role == "owner", "another process holds this data dir"
    sides: dict[str, list[float]] = {"owner": [], "client": []}
    try:
        _time(owner, args.index)  # warm-up: pages the segments in
        for _ in range(args.rounds):
            sides["owner"] += _time(owner, args.index)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    str(args.data_dir),
                    "--index",
                    args.index,
                    "--client",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            sides["client"] += json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        owner.close()
    _report(sides)


if __name__ == "__main__":
    main()
