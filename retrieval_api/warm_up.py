"""Searches run before the server takes requests, so that the first callers do not pay for
paging the index in.

On a large embedded index the first searches after opening wait on the engine reading its
segments: at ~1M chunks the first takes 3.2-3.7 s and p99 of the first 300 is 260-330 ms;
after 50 warm-up searches (9 s), 55 ms (docs/benchmarks.md, "Scale"). The queries are the
opening words of chunks the index holds: what its searches look like, nothing to ship or log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import islice

from index.contracts import CollectionNotFoundError, VectorStore
from index.search.searcher import IndexSearcher

logger = logging.getLogger("sluice.api")

WORDS_PER_QUERY = 8


@dataclass(frozen=True)
class WarmUp:
    searches: int
    seconds: float


def warm_up(store: VectorStore, searcher: IndexSearcher, alias: str, searches: int) -> WarmUp:
    """`searches` hybrid searches of `alias`, each for the opening words of one of its chunks.
    An empty or missing index has nothing to warm; one that cannot be read now (held by
    another process) is left to `/ready` and `/retrieve` to report."""
    started = time.perf_counter()
    done = 0
    try:
        collection = store.resolve_alias(alias)
        if searches <= 0 or collection is None:
            return WarmUp(0, 0.0)
        points = islice(store.scroll(collection, ["text"], page_size=searches), searches)
        queries = [
            " ".join(str(payload.get("text", "")).split()[:WORDS_PER_QUERY])
            for _, payload in points
        ]
        for query in filter(None, queries):
            searcher.search(alias, query, "hybrid", 10)
            done += 1
    except CollectionNotFoundError:
        return WarmUp(0, 0.0)
    except Exception as error:  # a cold start is slower, not broken: `/ready` tells
        logger.warning("warming %s stopped after %d searches: %s", alias, done, error)
    warmed = WarmUp(done, time.perf_counter() - started)
    logger.info("warmed %s with %d searches in %.1f s", alias, warmed.searches, warmed.seconds)
    return warmed
