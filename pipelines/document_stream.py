"""Reading (fetch, hash, parse) documents, in worker processes beside the embedding."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from ingest.changes import Candidate
from ingest.reader import DocumentReader, ReadResult


def read_documents(
    reader: DocumentReader, candidates: list[Candidate], workers: int
) -> Iterator[ReadResult]:
    """Results as they complete; with workers > 1 they are read in other processes while the
    caller embeds what has arrived."""
    if workers <= 1 or len(candidates) <= 1:
        yield from (reader.read(c) for c in candidates)
        return
    with ProcessPoolExecutor(
        max_workers=min(workers, len(candidates)),
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(reader,),
    ) as pool:
        futures = [pool.submit(_read_in_worker, c) for c in candidates]
        for future in as_completed(futures):
            yield future.result()


_worker_reader: DocumentReader | None = None

# Parse processes yield the CPU to the embedder in the main process: embedding is the costlier
# stage, and parsing only needs to stay a batch ahead of it, which idle cycles are enough for.
PARSE_WORKER_NICENESS = 10


def _init_worker(reader: DocumentReader) -> None:
    global _worker_reader
    _worker_reader = reader
    if hasattr(os, "nice"):
        os.nice(PARSE_WORKER_NICENESS)


def _read_in_worker(candidate: Candidate) -> ReadResult:
    assert _worker_reader is not None
    return _worker_reader.read(candidate)
