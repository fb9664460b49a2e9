"""The local channel between the process that owns the embedded shards and the others.

The owner serves its `EdgeVectorStore` on a Unix socket in the data dir; a client sends each
`VectorStore` call as one request and gets its result (or its exception) back. The socket is
created readable by its owner only, and each side of a connection proves it knows the key the
owner wrote (mode 0600) beside it (an HMAC-SHA256 challenge each way), so only the same user's
processes on this machine reach the index, and a client never talks to an impostor.

Every step has a deadline (`deadline_s`): connecting, the challenge, and each wait for a reply.
An owner that is busy with a long call says so every `deadline_s / 3` (a heartbeat), so only an
owner that is stopped (SIGSTOP, a debugger) or wedged makes a client give up: `OwnerUnresponsive`,
which a caller reports as the index being unavailable now, not as the owner being gone.

After the challenge, the client names the channel's protocol version and its Sluice version;
an owner of another protocol refuses with both versions named (`ProtocolMismatch`), before any
pickled message is exchanged: pickles name classes, and two versions' classes need not agree.
Messages are pickled: the peers are the same user's processes, which could read the shard files
directly anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import stat
import struct
import tempfile
import threading
import weakref
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from index.contracts import IndexLockedError, VectorStore

PROTOCOL = 4
"""The channel's protocol; bumped whenever a message, a call's arguments or a type that crosses
the channel changes shape or module (3: search results cross as columns; 4: the contracts moved
from `index.types` to `index.contracts`). Version 1 (no handshake) is refused by name."""

# AF_UNIX paths are limited to 107 bytes on Linux; a deeper data dir gets its socket in a folder
# of this user's own in the temporary folder, under a name derived from the data dir (both sides
# compute the same one).
_MAX_SOCKET_PATH = 100

# Iterations a client may run, and how many of their items one round trip carries: `scroll`
# yields a point at a time, `read_points` a page of them.
ITERATIONS = {"scroll": 1024, "read_points": 1}
MAX_SCANS = 16
"""Open scans per connection; the least recently read is dropped past it (a client that left
a scan half read must not hold the owner's memory)."""


def protocol_methods() -> frozenset[str]:
    """The public methods of the `VectorStore` Protocol."""
    return frozenset(
        name for name, value in vars(VectorStore).items() if callable(value) and name[0] != "_"
    )


CALLS = protocol_methods() - set(ITERATIONS) - {"close"}
"""Calls a client may make: every `VectorStore` method, derived from the Protocol so that a
method added there reaches the owner without a list to keep; nothing else of the store."""

SLUICE_VERSION = "unknown"
with contextlib.suppress(PackageNotFoundError):
    SLUICE_VERSION = version("sluice-rag")


class OwnerGone(ConnectionError):
    """The owner closed the channel or died; the caller may take the shards over."""


class KeyChanged(Exception):
    """The key the client read is not the owner's: another owner started since; read it again."""


class OwnerUnresponsive(IndexLockedError):
    """The owner holds the index but has not answered within the deadline (stopped, wedged):
    nothing is taken over (it is alive: the lock says so); a later call may succeed."""


class ProtocolMismatch(IndexLockedError):
    """The owner speaks another version of the channel: two Sluice versions on one data dir."""


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


def write_key(path: Path) -> bytes:
    """A fresh key, in place whole (a temporary file renamed over the old one), so a client
    never reads half of it."""
    key = secrets.token_bytes(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    return key


def set_timeouts(sock: socket.socket, receive_s: float | None, send_s: float | None) -> None:
    """Deadlines on each read and write of a blocking socket (SO_RCVTIMEO / SO_SNDTIMEO, which
    `os.read` under `Connection` obeys: a read past it fails with EAGAIN); None: none."""
    for option, seconds in ((socket.SO_RCVTIMEO, receive_s), (socket.SO_SNDTIMEO, send_s)):
        whole = int(seconds or 0)
        micros = int(((seconds or 0) - whole) * 1_000_000)
        sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, micros))


def proof(key: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, role + nonce, hashlib.sha256).digest()


def mismatch_message(other: str) -> str:
    return (
        f"this index is opened by two Sluice versions at once: Sluice {SLUICE_VERSION} (channel "
        f"protocol {PROTOCOL}) and {other}; stop the processes of one version, or let them "
        "finish, before starting the other"
    )


class ShardClient:
    """Calls on the owner's store; one connection per thread (calls on one are sequential),
    closed when its thread ends (a server's worker threads come and go: a connection kept past
    its thread would hold a thread of the owner's for good)."""

    def __init__(self, store_dir: Path, deadline_s: float = 20.0, key: bytes | None = None) -> None:
        """`key`: the owner's key as this client knows it (default: read from its file)."""
        self.address = socket_path(store_dir)
        self.deadline_s = deadline_s
        self._key = key if key is not None else key_path(store_dir).read_bytes()
        self._local = threading.local()
        self._all: weakref.WeakSet[Connection] = weakref.WeakSet()  # its thread holds each
        self._lock = threading.Lock()
        self._connection()  # fails now, not at the first call, when no owner answers

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._all.add(connection)
        return connection

    def _connect(self) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.deadline_s)
        try:
            sock.connect(str(self.address))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            sock.close()
            raise OwnerGone(f"no owner answers on {self.address}: {error}") from error
        except OSError as error:  # a full backlog past the deadline: a stopped owner
            sock.close()
            raise self._unresponsive("connecting") from error
        sock.settimeout(None)
        set_timeouts(sock, self.deadline_s, self.deadline_s)
        connection = Connection(sock.detach())
        try:
            nonce = connection.recv_bytes(64)
            if nonce.startswith(b"#CHALLENGE#"):  # multiprocessing's: channel protocol 1
                raise ProtocolMismatch(mismatch_message("an older Sluice (channel protocol 1)"))
            mine = secrets.token_bytes(32)
            connection.send_bytes(proof(self._key, b"client", nonce) + mine)
            answer = connection.recv_bytes(64)
            if not hmac.compare_digest(answer, proof(self._key, b"owner", mine)):
                raise KeyChanged(f"the owner on {self.address} holds another key")
            connection.send(("hello", "", (PROTOCOL, SLUICE_VERSION), {}))
            status, value = connection.recv()
        except BlockingIOError as error:
            connection.close()
            raise self._unresponsive("the key challenge") from error
        except (EOFError, OSError) as error:
            connection.close()
            raise OwnerGone(f"the index owner went away: {error}") from error
        except BaseException:
            connection.close()
            raise
        if status == "error":
            connection.close()
            if isinstance(value, ProtocolMismatch):
                raise value
            raise ProtocolMismatch(
                mismatch_message("an older Sluice (channel protocol 1)")
            ) from value
        return connection

    def _unresponsive(self, doing: str) -> OwnerUnresponsive:
        return OwnerUnresponsive(
            f"the process that owns the index ({self.address}) did not answer {doing} within "
            f"{self.deadline_s:g} s (SLUICE_OWNER_TIMEOUT_S): it is stopped or busy; retry "
            "shortly, or resume it"
        )

    def _request(self, kind: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        connection = self._connection()
        try:
            connection.send((kind, name, args, kwargs))
            status, value = connection.recv()
            while status == "beat":  # the owner is at it: wait another deadline
                status, value = connection.recv()
        except BlockingIOError as error:
            self._forget(connection)
            raise self._unresponsive(f"'{name or kind}'") from error
        except (EOFError, OSError) as error:
            self._forget(connection)
            raise OwnerGone(f"the index owner went away: {error}") from error
        if status == "error":
            raise value
        return StopIteration if status == "stop" else value

    def _forget(self, connection: Connection) -> None:
        """A connection that missed a reply is out of step: closed, never used again."""
        self._local.connection = None
        with self._lock:
            self._all.discard(connection)
        with contextlib.suppress(OSError):
            connection.close()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._request("call", name, args, kwargs)

    def scan(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        number = self._request("scan", name, args, kwargs)
        batch_size = ITERATIONS[name]
        thread = threading.get_ident()
        finished = False
        try:
            while (
                batch := self._request("next", "", (number, batch_size), {})
            ) is not StopIteration:
                yield from batch
            finished = True
        finally:
            # Left half read (closed in the thread that read it): the owner frees it now.
            if not finished and threading.get_ident() == thread:
                with contextlib.suppress(Exception):
                    self._request("drop", "", (number,), {})

    def close(self) -> None:
        with self._lock:
            for connection in list(self._all):
                with contextlib.suppress(OSError):
                    connection.close()
            self._all.clear()
        self._local = threading.local()
