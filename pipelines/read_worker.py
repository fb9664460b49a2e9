"""The worker side of reading: a process that loads the parser once, then reads each document it
is sent, at a low priority, and dies with the process that started it.

Dying with the parent cannot be left to a thread of the worker that watches for it: a parser
library deep in C code holds the GIL for as long as it likes, so no other thread runs. On Linux
the kernel kills the worker instead (`prctl(PR_SET_PDEATHSIG, SIGKILL)`) the moment the thread
that started it exits, which is the supervising thread of `document_stream`, alive for as long as
its workers are. Elsewhere a watching thread is all there is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from ingest.reader import DocumentReader

# Parse processes yield the CPU to the embedder in the main process: embedding is the costlier
# stage, and parsing only needs to stay a batch ahead of it, which idle cycles are enough for.
PARSE_WORKER_NICENESS = 10
READY = "ready"
"""Sent when the parser is loaded: the document's time limits count from then."""
LOADING = "loading"
"""Sent before a document whose file type's partitioner is not loaded yet, while it loads;
READY follows, then the result. Documents of a type already loaded get neither: each message
costs the supervisor a read of the worker's usage."""
_PR_SET_PDEATHSIG = 1


def work(connection: Connection, reader: DocumentReader, parent: int) -> None:
    """A worker's loop: load the parser, then read each candidate it is sent until None.

    `parent`: the pid of the process that started it, which it must not outlive.
    """
    os.setpgrp()  # so that stopping it stops what it started too
    die_with_parent(parent)
    if hasattr(os, "nice"):
        os.nice(PARSE_WORKER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
    warm_up = getattr(reader.parser, "warm_up", None)
    if reader.parse and callable(warm_up):
        warm_up()
    connection.send(READY)
    while True:
        candidate = connection.recv()
        if candidate is None:
            return
        loader = getattr(reader.parser, "partitioner_loader", None)
        load = loader(candidate.item.name) if reader.parse and callable(loader) else None
        if load is not None:
            connection.send(LOADING)
            load()
            connection.send(READY)
        connection.send(reader.read(candidate))


def die_with_parent(parent: int) -> None:
    """Have this process killed when `parent` (its parent now, or it would not be asked) goes,
    and exit at once if it has already gone: a parent that died before the kernel was asked
    left the process to another parent, which the kernel would then watch instead."""
    if not _killed_by_the_kernel_with_parent():
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _killed_by_the_kernel_with_parent() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)
