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
import itertools
import os
import secrets
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from index.contracts import IndexLockedError, StoreError, VectorStore

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

_VERSION = "unknown"
with contextlib.suppress(PackageNotFoundError):
    _VERSION = version("sluice-rag")


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


def _write_key(path: Path) -> bytes:
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


def _timeouts(sock: socket.socket, receive_s: float | None, send_s: float | None) -> None:
    """Deadlines on each read and write of a blocking socket (SO_RCVTIMEO / SO_SNDTIMEO, which
    `os.read` under `Connection` obeys: a read past it fails with EAGAIN); None: none."""
    for option, seconds in ((socket.SO_RCVTIMEO, receive_s), (socket.SO_SNDTIMEO, send_s)):
        whole = int(seconds or 0)
        micros = int(((seconds or 0) - whole) * 1_000_000)
        sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, micros))


def _proof(key: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, role + nonce, hashlib.sha256).digest()


class ShardServer:
    """Serves `store` to other processes until `close()`; one thread per connection."""

    def __init__(self, store: Any, store_dir: Path, deadline_s: float = 20.0) -> None:
        self.store = store
        self.deadline_s = deadline_s
        self.address = socket_path(store_dir)
        self._key = _write_key(key_path(store_dir))  # before the socket listens
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()  # left by an owner that died; we hold the owner lock
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is created readable by its owner only
        try:
            self._socket.bind(str(self.address))
        finally:
            os.umask(old_umask)
        self._socket.listen(64)
        self._closed = threading.Event()
        self._connections: dict[Connection, _Peer] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="shard-server", daemon=True).start()
        threading.Thread(target=self._beat, name="shard-heartbeat", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._socket.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            threading.Thread(
                target=self._serve, args=(sock,), name="shard-client", daemon=True
            ).start()

    def _handshake(self, connection: Connection) -> bool:
        """The challenge each way, then the client's protocol; False: refused or gone."""
        nonce = secrets.token_bytes(32)
        connection.send_bytes(nonce)
        answer = connection.recv_bytes(128)
        if not hmac.compare_digest(answer[:32], _proof(self._key, b"client", nonce)):
            connection.send_bytes(b"refused")
            return False
        connection.send_bytes(_proof(self._key, b"owner", answer[32:64]))
        hello = connection.recv()
        if not (isinstance(hello, tuple) and len(hello) == 4 and hello[0] == "hello"):
            reason = "a client without a protocol version (an older Sluice)"
        elif hello[2][0] != PROTOCOL:
            reason = f"Sluice {hello[2][1]} (channel protocol {hello[2][0]})"
        else:
            connection.send(("ok", (PROTOCOL, _VERSION)))
            return True
        connection.send(("error", ProtocolMismatch(_mismatch(reason))))
        return False

    def _serve(self, sock: socket.socket) -> None:
        # Each read of the handshake within the deadline; afterwards a client may stay idle
        # between calls as long as it likes, but a reply it does not read fails in time.
        _timeouts(sock, self.deadline_s, self.deadline_s)
        connection = Connection(os.dup(sock.fileno()))
        peer = _Peer()
        try:
            if not self._handshake(connection):
                return
            _timeouts(sock, None, self.deadline_s)
            with self._lock:
                self._connections[connection] = peer
            self._answer(connection, peer)
        except (EOFError, OSError, TypeError, ValueError):
            pass  # the client hung up or missed a deadline, or `close()` closed the connection
        finally:
            with self._lock:
                self._connections.pop(connection, None)
            connection.close()
            sock.close()

    def _answer(self, connection: Connection, peer: _Peer) -> None:
        scans: OrderedDict[int, Iterator[Any]] = OrderedDict()
        numbers = itertools.count()
        while True:
            kind, name, args, kwargs = connection.recv()
            peer.busy_since = time.monotonic()
            try:
                reply = self._reply(kind, name, args, kwargs, scans, numbers)
            except Exception as error:  # the caller's failure, raised in the caller
                reply = ("error", error)
            with peer.sending:
                peer.busy_since = None
                try:
                    connection.send(reply)
                except (OSError, EOFError):
                    raise
                except Exception as error:  # an exception that does not pickle
                    if reply[0] != "error":
                        raise
                    connection.send(("error", StoreError(f"{type(error).__name__}: {error}")))

    def _reply(
        self,
        kind: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        scans: OrderedDict[int, Iterator[Any]],
        numbers: Iterator[int],
    ) -> tuple[str, Any]:
        if kind == "call" and name in CALLS:
            return "ok", getattr(self.store, name)(*args, **kwargs)
        if kind == "scan" and name in ITERATIONS:
            number = next(numbers)
            scans[number] = iter(getattr(self.store, name)(*args, **kwargs))
            while len(scans) > MAX_SCANS:
                scans.popitem(last=False)
            return "ok", number
        if kind == "next":
            scan = scans.get(args[0])
            if scan is None:
                return "error", StoreError("the scan was dropped (too many open at once)")
            scans.move_to_end(args[0])
            batch = list(itertools.islice(scan, args[1]))
            if batch:
                return "ok", batch
            scans.pop(args[0], None)
            return "stop", None
        if kind == "drop":
            scans.pop(args[0], None)
            return "ok", None
        return "error", StoreError(f"unknown request {kind} {name}")

    def _beat(self) -> None:
        """Tells each client whose call takes long that the owner is alive and at it."""
        every = max(0.2, self.deadline_s / 3)
        while not self._closed.wait(every):
            with self._lock:
                peers = list(self._connections.items())
            now = time.monotonic()
            for connection, peer in peers:
                if peer.busy_since is None or now - peer.busy_since < every:
                    continue
                with peer.sending, contextlib.suppress(Exception):
                    if peer.busy_since is not None:
                        connection.send(("beat", None))

    def close(self) -> None:
        """Stops serving; connected clients see the owner gone and may take over."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        with self._lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.close()
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()


class _Peer:
    """A connection's state the heartbeat reads: since when its call runs, and the lock that
    keeps a heartbeat and a reply from interleaving."""

    def __init__(self) -> None:
        self.busy_since: float | None = None
        self.sending = threading.Lock()


def _mismatch(other: str) -> str:
    return (
        f"this index is opened by two Sluice versions at once: Sluice {_VERSION} (channel "
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
        _timeouts(sock, self.deadline_s, self.deadline_s)
        connection = Connection(sock.detach())
        try:
            nonce = connection.recv_bytes(64)
            if nonce.startswith(b"#CHALLENGE#"):  # multiprocessing's: channel protocol 1
                raise ProtocolMismatch(_mismatch("an older Sluice (channel protocol 1)"))
            mine = secrets.token_bytes(32)
            connection.send_bytes(_proof(self._key, b"client", nonce) + mine)
            answer = connection.recv_bytes(64)
            if not hmac.compare_digest(answer, _proof(self._key, b"owner", mine)):
                raise KeyChanged(f"the owner on {self.address} holds another key")
            connection.send(("hello", "", (PROTOCOL, _VERSION), {}))
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
            raise ProtocolMismatch(_mismatch("an older Sluice (channel protocol 1)")) from value
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
