"""Reading (fetch, hash, parse) documents in supervised worker processes beside the embedding.

Each document is read in a worker process under a budget (`read_budget`): a read that uses more
CPU time than its limit, waits far longer than it without using CPU, or whose worker (with
anything it started, such as an OCR process) grows past the memory limit, is stopped by killing
that worker, reported with the limit it passed, and the run goes on with a fresh worker. Memory
stays bounded: a worker is handed a document only while fewer than `window` results wait for the
caller, so a slow embedder holds back parsing instead of piling up parsed documents, and closing
the stream (the caller failed, or was interrupted) kills every worker at once rather than
waiting for queued parses; a caller killed outright takes its workers with it (`read_worker`).

Workers start as the reading needs them, up to `workers`: one at first, another each time the
reading so far has taken more than `EXTRA_WORKER_AFTER_S` per worker running. A worker costs
~5 s of CPU to load its parser, while a small text file parses in milliseconds: a scheduled run
that finds a few changed notes reads them in one worker; a folder of PDFs gets all of them.
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

from ingest.changes import Candidate
from ingest.reader import DocumentReader, ReadResult
from pipelines.read_budget import NO_BUDGET, ReadBudget, Usage, family_usage, overrun
from pipelines.read_worker import READY, work

__all__ = ["NO_BUDGET", "ReadBudget", "ReadPool", "read_documents"]

_POLL_S = 0.1
EXTRA_WORKER_AFTER_S = 2.0
"""Seconds of reading per running worker past which another is started (when documents wait)."""


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
    cpu_at_start: float = 0.0
    ready: bool = False
    """Its parser is loaded: the time limits count from then, not from the process start or
    the loading of the parser for the document's file type."""

    def start_clock(self) -> None:
        """The current read's time and CPU time count from now."""
        self.started = time.monotonic()
        usage = self.usage()
        self.cpu_at_start = usage.cpu_s if usage else 0.0

    def usage(self) -> Usage | None:
        return None if self.process.pid is None else family_usage(self.process.pid)

    def kill(self) -> None:
        """The worker and what it started (it leads its own process group once it runs)."""
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.kill()  # one still starting has no group of its own yet
        self.process.join(timeout=5)
        self.connection.close()


class _SupervisedPool:
    """A thread hands documents to workers, enforces the budget, and queues results."""

    def __init__(
        self,
        reader: DocumentReader,
        workers: int,
        budget: ReadBudget,
        window: int,
        keep: bool = False,
    ) -> None:
        """`keep`: workers outlive a batch (`batch()`), until `stop()`."""
        self.reader = reader
        self.keep = keep
        self.pending: deque[Candidate] = deque()
        self.work = threading.Event()
        self.size = workers
        self.budget = budget
        self.results: queue.Queue[ReadResult | BaseException | None] = queue.Queue()
        self.slots = threading.Semaphore(max(1, window))
        self.stopping = threading.Event()
        self.workers: list[_Worker] = []
        self.thread: threading.Thread | None = None
        self.read_s = 0.0
        """Seconds workers have spent on reads that ended (from READY to the result)."""

    def run(self, candidates: list[Candidate]) -> Iterator[ReadResult]:
        self.pending.extend(candidates)
        self._start()
        while True:
            item = self.results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self.slots.release()
            yield item

    def batch(self, candidates: list[Candidate]) -> Iterator[ReadResult]:
        """Of a kept pool: these candidates' results, by workers kept from earlier batches."""
        self.pending.extend(candidates)
        self.work.set()
        self._start()
        for _ in candidates:
            item = self.results.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                raise RuntimeError("the reading pool stopped")
            self.slots.release()
            yield item

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._supervise, name="sluice-read", daemon=True)
            self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread is None or self.thread.is_alive()

    def stop(self) -> None:
        """Kills what still runs: a caller that stops early wants no more of its reads."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        for worker in self.workers:
            worker.kill()
        self.workers.clear()

    def _supervise(self) -> None:
        pending = self.pending
        try:
            while not self.stopping.is_set():
                if not pending and not self._busy():
                    if not self.keep:
                        break
                    self.work.wait(_POLL_S)  # a kept pool's workers wait for the next batch
                    self.work.clear()
                    continue
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
        while pending and not self.stopping.is_set():
            idle = next((w for w in self.workers if w.candidate is None), None)
            if idle is None and not self._worth_another():
                return
            if not self.slots.acquire(blocking=False):
                return
            idle = idle or self._spawn()
            idle.candidate = pending.popleft()
            idle.start_clock()
            idle.connection.send(idle.candidate)

    def _worth_another(self) -> bool:
        """No worker yet; or fewer than `size`, each loaded, and the reading so far has cost
        more than another's start is worth (`EXTRA_WORKER_AFTER_S` per worker running)."""
        if not self.workers:
            return True
        if len(self.workers) >= self.size or not all(w.ready for w in self.workers):
            return False
        now = time.monotonic()
        reading = self.read_s + sum(now - w.started for w in self._busy())
        return reading > EXTRA_WORKER_AFTER_S * len(self.workers)

    def _spawn(self) -> _Worker:
        """A new worker, started from this supervising thread: the kernel kills it when the
        thread that started it exits (`read_worker`), and this one outlives its workers."""
        context = get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=work, args=(theirs, self.reader, os.getpid()), name="sluice-reader", daemon=True
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
                if isinstance(message, str):  # LOADING or READY
                    worker.ready = message == READY
                    worker.start_clock()
                    continue
                self.read_s += time.monotonic() - worker.started
                worker.candidate = None
                self.results.put(message)
            elif worker.process.sentinel in ready:
                self._replace(worker, _died(worker))

    def _enforce_budget(self) -> None:
        if not self.budget.limited:
            return
        now = time.monotonic()
        for worker in self._busy():
            assert worker.candidate is not None
            if worker.connection.poll():
                continue  # finished in time; collected on the next round
            usage = worker.usage()
            if usage is None:
                continue  # it died; collected on the next round
            if worker.ready:
                read = Usage(usage.cpu_s - worker.cpu_at_start, usage.rss_mb)
                reason = overrun(self.budget, read, now - worker.started)
            else:  # while the parser loads, only its memory counts
                reason = overrun(ReadBudget(0, self.budget.memory_mb), usage, 0.0)
            if reason:
                self._replace(worker, reason)

    def _replace(self, worker: _Worker, reason: str) -> None:
        """A stopped or dead worker's document fails with `reason`; a new worker is spawned
        when there is work for it."""
        assert worker.candidate is not None
        seconds = time.monotonic() - worker.started
        if worker.ready:
            self.read_s += seconds  # a read stopped for its budget was reading all the same
        failed = ReadResult(worker.candidate, error=reason, attempts=1, seconds=seconds)
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


class ReadPool:
    """Reading workers kept from one run to the next, for a live source whose batches are small
    and frequent: a new worker costs ~5 s of CPU to load its parser, a small file's read
    milliseconds. The same budget applies to every read; a batch its caller abandons, or a pool
    whose supervision failed, is stopped and the next batch starts a new one."""

    def __init__(self, workers: int, budget: ReadBudget) -> None:
        self.workers = workers
        self.budget = budget
        self._pool: _SupervisedPool | None = None

    def read(self, reader: DocumentReader, candidates: list[Candidate]) -> Iterator[ReadResult]:
        """`reader`: the same source and parser every batch (the workers keep the first)."""
        if not candidates:
            return
        if self._pool is None or not self._pool.alive:
            workers = max(1, self.workers)
            self._pool = _SupervisedPool(reader, workers, self.budget, 2 * workers, keep=True)
        done = False
        try:
            yield from self._pool.batch(candidates)
            done = True
        finally:
            if not done:
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None


def _died(worker: _Worker) -> str:
    worker.process.join(timeout=1)
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return f"the reading process {how} (out of memory, or a crash in a parser library)"
