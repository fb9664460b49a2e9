"""What `/feedback` traffic costs `/retrieve`: one `sluice serve` (feedback exploration on),
four client threads sending hybrid queries, in rounds that alternate between no feedback and a
`/feedback` call (a click on the third hit) after every tenth answer, i.e. feedback at 10 % of
requests. Only `/retrieve` latencies are compared; medians of the rounds are quoted.

    .venv/bin/python bench/feedback_overhead.py DATA_DIR [--index NAME] [--rounds 5] [--round-s 20]

DATA_DIR holds an ingested index; it is copied, so the bench's query and feedback logs stay out
of it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.access_overhead import CLIENTS, QUERIES, serve

FEEDBACK_EVERY = 10


def load(
    url: str, seconds: float, feedback: bool, rate: float | None = None
) -> tuple[list[float], int, set[int]]:
    """`/retrieve` latencies, feedback calls made, and every status seen. `rate`: retrieves per
    second in all, each sent on schedule (open loop); None: each client asks again at once."""
    latencies: list[float] = []
    sent = [0]
    statuses: set[int] = set()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = offset
            start = time.monotonic()
            while time.monotonic() < stop:
                if rate:
                    due = start + ((i - offset) * CLIENTS + offset) / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                body = {"query": QUERIES[i % len(QUERIES)], "mode": "hybrid", "top_k": 10}
                started = time.perf_counter()
                answer = http.post(f"{url}/retrieve", json=body)
                elapsed = time.perf_counter() - started
                statuses.add(answer.status_code)
                i += 1
                if feedback and i % FEEDBACK_EVERY == 0:
                    hits = answer.json()["hits"]
                    event = {
                        "request_id": answer.json()["request_id"],
                        "event_id": f"{offset}-{i}-{time.monotonic_ns()}",
                        "items": [{"chunk_id": hits[2]["chunk_id"], "label": "clicked"}],
                    }
                    statuses.add(http.post(f"{url}/feedback", json=event).status_code)
                    with lock:
                        sent[0] += 1
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, sent[0], statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=20.0)
    parser.add_argument("--index", default="default", help="The index to query in DATA_DIR.")
    parser.add_argument(
        "--rate", type=float, default=None, help="Retrieves per second in all (open loop)."
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-feedback-"))
    data = work / "data"
    shutil.copytree(args.data_dir, data, ignore=shutil.ignore_patterns("prefect"))
    settings = {"SLUICE_FEEDBACK_EXPLORATION": "0.1", "SLUICE_INDEX_NAME": args.index}
    server = serve(data, 8613, "off", settings)
    url = "http://localhost:8613"
    try:
        load(url, 5, True)  # warm-up
        p50s: dict[bool, list[float]] = {False: [], True: []}
        calls = 0
        for _ in range(args.rounds):
            for feedback in (False, True):
                latencies, sent, statuses = load(url, args.round_s, feedback, args.rate)
                assert statuses == {200}, statuses
                calls += sent
                p50s[feedback].append(1000 * statistics.median(latencies))
        without, with_feedback = (statistics.median(p50s[f]) for f in (False, True))
        pace = f"{args.rate:g} retrieves/s on schedule" if args.rate else "as fast as answered"
        rounds = f"{args.rounds} rounds of {args.round_s:g} s"
        print(f"{CLIENTS} clients, hybrid top 10, {pace}, {rounds}")
        print(f"/retrieve p50 without feedback {without:.1f} ms, with {with_feedback:.1f} ms")
        print(f"ratio {with_feedback / without:.3f} ({calls} feedback calls in all)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
