"""What each /retrieve option costs over plain hybrid search, side by side in one run.

Over an index `sluice eval` built (SLUICE_DATA_DIR, alias `eval-<dataset>`), every test query
is answered once per option, the options in a rotating order per query so that they share the
machine's noise alike; each answer goes through the route's own code (`search_page`, then the
hits and groups the response carries), everything but HTTP and JSON. Prints the median and p90
per option and its ratio to plain hybrid's median, as one JSON object on the last line.

    SLUICE_DATA_DIR=.bench/all .venv/bin/python bench/result_shaping.py \\
        ../shared/data/beir/scifact --alias eval-scifact
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from composition.components import Components  # noqa: E402
from config.settings import Settings  # noqa: E402
from index.contracts import HybridOptions, PayloadFilter  # noqa: E402
from pipelines.beir import load_beir  # noqa: E402
from retrieval_api.cursor import CursorCodec  # noqa: E402
from retrieval_api.hits import build_hits  # noqa: E402
from retrieval_api.routes.retrieve import search_page  # noqa: E402
from sluice_client.request import MAX_CANDIDATE_POOL, RetrieveRequest  # noqa: E402

OPTIONS: dict[str, dict[str, Any]] = {
    "plain hybrid": {},
    "group_by doc (3 per doc)": {"group_by": "doc"},
    "expand 1 before, 1 after": {"expand": {"before": 1, "after": 1}},
    "expand section": {"expand": {"section": True}},
    "mmr 0.3 (50 candidates)": {"mmr": {"diversity": 0.3}},
    "min_relative_score 0.5": {"min_relative_score": 0.5},
    "page 2 (cursor)": {"cursor": "next"},
}
CURSORS = CursorCodec(secrets.token_bytes(32), MAX_CANDIDATE_POOL)


def answer(searcher: Any, alias: str, query: str, extra: dict[str, Any], cursor: str) -> float:
    body = RetrieveRequest.model_validate(
        {"query": query, "top_k": 10, **extra, **({"cursor": cursor} if "cursor" in extra else {})}
    )
    started = time.perf_counter()
    page = search_page(
        searcher, alias, body, 10, HybridOptions(), PayloadFilter(), False, None, CURSORS
    )
    assert page.outcome is not None and page.shaped is not None
    build_hits(page.outcome, "hybrid", True, page.shaped, page.first_rank)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path, help="the BEIR folder (its test queries)")
    parser.add_argument("--alias", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    queries = list(load_beir(args.dataset).queries.values())
    parts = Components(Settings())
    store = parts.store()
    searcher = parts.searcher(store)
    try:
        cursors = {}
        for query in queries:  # the first pages, whose cursors the page-2 option continues
            body = RetrieveRequest(query=query, top_k=10)
            page = search_page(
                searcher,
                args.alias,
                body,
                10,
                HybridOptions(),
                PayloadFilter(),
                False,
                None,
                CURSORS,
            )
            cursors[query] = page.next_cursor or ""
        names = list(OPTIONS)
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for number, query in enumerate(queries):
                shift = (number + round_) % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(
                        answer(searcher, args.alias, query, OPTIONS[name], cursors[query])
                    )
    finally:
        store.close()
    plain = statistics.median(times["plain hybrid"])
    figures = {
        name: {
            "p50_ms": round(statistics.median(values), 2),
            "p90_ms": round(statistics.quantiles(values, n=10)[-1], 2),
            "ratio_to_plain": round(statistics.median(values) / plain, 2),
        }
        for name, values in times.items()
    }
    for name, row in figures.items():
        print(
            f"{name:28} p50 {row['p50_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms  "
            f"x{row['ratio_to_plain']:.2f}"
        )
    print(json.dumps({"dataset": args.dataset.name, "queries": len(queries), "options": figures}))


if __name__ == "__main__":
    main()
