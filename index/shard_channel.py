"""The local channel between the process that owns the embedded shards and the others.

The owner serves its `EdgeVectorStore` on a Unix socket in the data dir; a client sends each
`VectorStore` call as one request and gets its result (or its exception) back. The socket is
created readable by its owner only, and a connection must also prove it knows the key the owner
wrote (mode 0600) beside it (`multiprocessing.connection`'s HMAC challenge), so only the same
user's processes on this machine can reach the index. Messages are pickled: the peers are the
same user's processes, which could read the shard files directly anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterator
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from index.types import IndexLockedError, StoreError

# AF_UNIX paths are limited to 107 bytes on Linux; a deeper data dir gets its socket in a folder
# of this user's own in the temporary folder, under a name derived from the data dir (both sides
# compute the same one).
_MAX_SOCKET_PATH = 100

# Calls a client may make: the `VectorStore` protocol, nothing else of the owner's store.
CALLS = frozenset(
    {
        "create_collection",
        "drop_collection",
        "list_collections",
        "collection_spec",
        "resolve_alias",
        "set_alias",
        "list_aliases",
        "upsert",
        "delete",
        "count",
        "distinct_values",
        "existing_ids",
        "fetch",
        "search",
    }
)
# Iterations a client may run, and how many of their items one round trip carries: `scroll`
# yields a point at a time, `read_points` a page of them.
ITERATIONS = {"scroll": 1024, "read_points": 1}


class OwnerGone(ConnectionError):
    """The owner closed the channel or died; the caller may take the shards over."""


class UnsafeSocketFolder(IndexLockedError):
    """The folder the owner socket would live in is not this user's alone: the index is not
    opened (reported like an index another process holds)."""


def socket_path(store_dir: Path) -> Path:
    inside = store_dir / "owner.sock"
    if len(str(inside)) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(store_dir.resolve()).encode()).hexdigest()[:16]
    return _private_folder() / f"{digest}.sock"


def _private_folder() -> Path:
    """`sluice-<uid>` in the temporary folder, created 0700. Anyone may create names there, so
    one that is not a folder, that another user owns, or that group or others may write is
    refused rather than used: its owner could squat or replace the socket."""
    folder = Path(tempfile.gettempdir()) / f"sluice-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    problem = _not_private(folder.lstat())
    if problem:
        raise UnsafeSocketFolder(
            f"{folder}, where the index owner's socket goes (the data dir's path is too long "
            f"for a socket), is {problem}; remove it, or give Sluice a temporary folder of "
            "your own (TMPDIR)"
        )
    return folder


def _not_private(info: os.stat_result) -> str:
    """What makes a folder unfit for the socket; empty when it is this user's alone."""
    if not stat.S_ISDIR(info.st_mode):
        return "not a folder"
    if info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}, not by this user (uid {os.getuid()})"
    if info.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def key_path(store_dir: Path) -> Path:
    return store_dir / "owner.key"


class ShardServer:
    """Serves `store` to other processes until `close()`; one thread per connection."""

    def __init__(self, store: Any, store_dir: Path) -> None:
        self.store = store
        self.address = socket_path(store_dir)
        key = secrets.token_bytes(32)
        descriptor = os.open(key_path(store_dir), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key)
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()  # left by an owner that died; we hold the owner lock
        old_umask = os.umask(0o177)  # the socket file is created readable by its owner only
        try:
            self._listener = Listener(str(self.address), family="AF_UNIX", authkey=key)
        finally:
            os.umask(old_umask)
        self._closed = threading.Event()
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="shard-server", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection = self._listener.accept()
            except Exception:  # AuthenticationError, EOFError, OSError: that client only
                if self._closed.is_set():
                    return
                continue  # a client that failed the key challenge, or hung up mid-way
            with self._lock:
                self._connections.add(connection)
            threading.Thread(
                target=self._serve, args=(connection,), name="shard-client", daemon=True
            ).start()

    def _serve(self, connection: Connection) -> None:
        scans: dict[int, Iterator[Any]] = {}
        numbers = itertools.count()
        try:
            while True:
                kind, name, args, kwargs = connection.recv()
                try:
                    if kind == "call" and name in CALLS:
                        reply: tuple[str, Any] = ("ok", getattr(self.store, name)(*args, **kwargs))
                    elif kind == "scan" and name in ITERATIONS:
                        number = next(numbers)
                        scans[number] = iter(getattr(self.store, name)(*args, **kwargs))
                        reply = ("ok", number)
                    elif kind == "next":
                        batch = list(itertools.islice(scans[args[0]], args[1]))
                        if batch:
                            reply = ("ok", batch)
                        else:
                            scans.pop(args[0], None)
                            reply = ("stop", None)
                    else:
                        reply = ("error", StoreError(f"unknown request {kind} {name}"))
                except Exception as error:  # the caller's failure, raised in the caller
                    reply = ("error", error)
                try:
                    connection.send(reply)
                except Exception as error:  # an exception that does not pickle
                    if reply[0] != "error":
                        raise
                    connection.send(("error", StoreError(f"{type(error).__name__}: {error}")))
        except (EOFError, OSError, TypeError):
            pass  # the client hung up, or `close()` closed the connection under `recv` (TypeError)
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def close(self) -> None:
        """Stops serving; connected clients see the owner gone and may take over."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.close()
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()


class ShardClient:
    """Calls on the owner's store; one connection per thread (calls on one are sequential)."""

    def __init__(self, store_dir: Path) -> None:
        self.address = socket_path(store_dir)
        self._key = key_path(store_dir).read_bytes()
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()
        self._connection()  # fails now, not at the first call, when no owner answers

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = Client(str(self.address), family="AF_UNIX", authkey=self._key)
            except (OSError, EOFError) as error:
                raise OwnerGone(f"no owner answers on {self.address}: {error}") from error
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def _request(self, kind: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        connection = self._connection()
        try:
            connection.send((kind, name, args, kwargs))
            status, value = connection.recv()
        except (EOFError, OSError) as error:
            self._local.connection = None
            raise OwnerGone(f"the index owner went away: {error}") from error
        if status == "error":
            raise value
        return StopIteration if status == "stop" else value

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._request("call", name, args, kwargs)

    def scan(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        number = self._request("scan", name, args, kwargs)
        batch_size = ITERATIONS[name]
        while (batch := self._request("next", "", (number, batch_size), {})) is not StopIteration:
            yield from batch

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                with contextlib.suppress(OSError):
                    connection.close()
            self._all.clear()
        self._local = threading.local()
