"""Reading (fetch, hash, parse) documents in supervised worker processes beside the embedding.

Each document is read in a worker process under a budget: a read that runs past the time limit,
or whose worker (with anything it started, such as an OCR process) grows past the memory limit,
is stopped by killing that worker, reported with the reason, and the run goes on with a fresh
worker. Memory stays bounded: a worker is handed a document only while fewer than `window`
results wait for the caller, so a slow embedder holds back parsing instead of piling up parsed
documents, and closing the stream (the caller failed, or was interrupted) kills every worker at
once rather than waiting for queued parses.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

import psutil

from ingest.changes import Candidate
from ingest.reader import DocumentReader, ReadResult


@dataclass(frozen=True)
class ReadBudget:
    """What one document's read may take; 0 means no limit."""

    seconds: float = 300.0
    memory_mb: int = 2048

    @property
    def limited(self) -> bool:
        return self.seconds > 0 or self.memory_mb > 0


NO_BUDGET = ReadBudget(0, 0)

# Parse processes yield the CPU to the embedder in the main process: embedding is the costlier
# stage, and parsing only needs to stay a batch ahead of it, which idle cycles are enough for.
PARSE_WORKER_NICENESS = 10
_POLL_S = 0.1


def read_documents(
    reader: DocumentReader,
    candidates: list[Candidate],
    workers: int,
    budget: ReadBudget = NO_BUDGET,
    window: int | None = None,
) -> Generator[ReadResult, None, None]:
    """Results as they complete, read in `workers` processes while the caller embeds.

    Without a budget and with one worker, documents are read in this process (nothing can stop
    a read that hangs there). `window` caps the results read ahead of the caller (default: two
    per worker).
    """
    if not candidates:
        return
    if workers <= 1 and not budget.limited:
        yield from (reader.read(c) for c in candidates)
        return
    workers = max(1, min(workers, len(candidates)))
    pool = _SupervisedPool(reader, workers, budget, window or 2 * workers)
    try:
        yield from pool.run(candidates)
    finally:
        pool.stop()


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    candidate: Candidate | None = None
    started: float = 0.0
    ready: bool = False
    """Its parser is loaded: the time limit counts from then, not from the process start."""

    def kill(self) -> None:
        """The worker and what it started (it leads its own process group once it runs)."""
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.kill()  # one still starting has no group of its own yet
        self.process.join(timeout=5)
        self.connection.close()

    def rss_mb(self) -> float:
        try:
            process = psutil.Process(self.process.pid)
            family = [process, *process.children(recursive=True)]
            total = 0
            for member in family:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            return total / 2**20
        except psutil.NoSuchProcess:
            return 0.0


class _SupervisedPool:
    """A thread hands documents to workers, enforces the budget, and queues results."""

    def __init__(
        self, reader: DocumentReader, workers: int, budget: ReadBudget, window: int
    ) -> None:
        self.reader = reader
        self.size = workers
        self.budget = budget
        self.results: queue.Queue[ReadResult | BaseException | None] = queue.Queue()
        self.slots = threading.Semaphore(max(1, window))
        self.stopping = threading.Event()
        self.workers: list[_Worker] = []
        self.thread: threading.Thread | None = None

    def run(self, candidates: list[Candidate]) -> Iterator[ReadResult]:
        self.thread = threading.Thread(
            target=self._supervise, args=(deque(candidates),), name="sluice-read", daemon=True
        )
        self.thread.start()
        while True:
            item = self.results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self.slots.release()
            yield item

    def stop(self) -> None:
        """Kills what still runs: a caller that stops early wants no more of its reads."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        for worker in self.workers:
            worker.kill()
        self.workers.clear()

    def _supervise(self, pending: deque[Candidate]) -> None:
        try:
            while (pending or self._busy()) and not self.stopping.is_set():
                self._hand_out(pending)
                self._collect()
                self._enforce_budget()
            if not self.stopping.is_set():
                self._shut_down_idle()
        except BaseException as error:  # surfaces in the caller's thread
            self.results.put(error)
        finally:
            self.results.put(None)

    def _busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.candidate is not None]

    def _hand_out(self, pending: deque[Candidate]) -> None:
        while pending and len(self._busy()) < self.size:
            if not self.slots.acquire(blocking=False):
                return
            if self.stopping.is_set():
                return
            idle = next((w for w in self.workers if w.candidate is None), None) or self._spawn()
            idle.candidate = pending.popleft()
            idle.started = time.monotonic()
            idle.connection.send(idle.candidate)

    def _spawn(self) -> _Worker:
        context = get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_work, args=(theirs, self.reader), name="sluice-reader", daemon=True
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self.workers.append(worker)
        return worker

    def _collect(self) -> None:
        busy = self._busy()
        if not busy:
            time.sleep(_POLL_S)  # every slot is taken: the caller has not caught up
            return
        waitables: list[object] = [w.connection for w in busy] + [w.process.sentinel for w in busy]
        ready = wait(waitables, timeout=_POLL_S)  # type: ignore[arg-type]
        for worker in busy:
            if worker.connection in ready:
                try:
                    message: ReadResult | str = worker.connection.recv()
                except (EOFError, OSError):
                    self._replace(worker, _died(worker))
                    continue
                if isinstance(message, str):  # _READY
                    worker.ready = True
                    worker.started = time.monotonic()
                    continue
                worker.candidate = None
                self.results.put(message)
            elif worker.process.sentinel in ready:
                self._replace(worker, _died(worker))

    def _enforce_budget(self) -> None:
        now = time.monotonic()
        for worker in self._busy():
            assert worker.candidate is not None
            if worker.connection.poll():
                continue  # finished in time; collected on the next round
            if self.budget.seconds and worker.ready and now - worker.started > self.budget.seconds:
                self._replace(
                    worker,
                    f"reading took longer than {self.budget.seconds:g} s, the per-document "
                    "time limit (SLUICE_PARSE_TIMEOUT_S); its worker was stopped",
                )
            elif self.budget.memory_mb and (used := worker.rss_mb()) > self.budget.memory_mb:
                self._replace(
                    worker,
                    f"reading used {used:,.0f} MB, over the per-document memory limit of "
                    f"{self.budget.memory_mb:,} MB (SLUICE_PARSE_MEMORY_MB); its worker was "
                    "stopped",
                )

    def _replace(self, worker: _Worker, reason: str) -> None:
        """A stopped or dead worker's document fails with `reason`; a new worker is spawned
        when there is work for it."""
        assert worker.candidate is not None
        failed = ReadResult(
            worker.candidate, error=reason, attempts=1, seconds=time.monotonic() - worker.started
        )
        worker.kill()
        self.workers.remove(worker)
        self.results.put(failed)

    def _shut_down_idle(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.connection.send(None)
        for worker in self.workers:
            worker.process.join(timeout=5)
            worker.connection.close()
        self.workers.clear()


def _died(worker: _Worker) -> str:
    worker.process.join(timeout=1)
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return f"the reading process {how} (out of memory, or a crash in a parser library)"


_READY = "ready"


def _exit_with(parent: int) -> None:
    """A worker whose run was killed (its parent gone) stops too, mid-parse if need be."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _work(connection: Connection, reader: DocumentReader) -> None:
    """A worker's loop: load the parser, then read each candidate it is sent until None."""
    os.setpgrp()  # so that stopping it stops what it started too
    if hasattr(os, "nice"):
        os.nice(PARSE_WORKER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    warm_up = getattr(reader.parser, "warm_up", None)
    if reader.parse and callable(warm_up):
        warm_up()
    connection.send(_READY)
    while True:
        candidate = connection.recv()
        if candidate is None:
            return
        connection.send(reader.read(candidate))
