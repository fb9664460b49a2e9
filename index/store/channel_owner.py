"""The owner's side of the shard channel: serves the shards it holds to client processes.

`ShardServer` runs in the process that holds the data dir's lock; `index.store.channel` has
the protocol, the key and the client.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from index.contracts import StoreError
from index.store.channel import (
    CALLS,
    ITERATIONS,
    MAX_SCANS,
    PROTOCOL,
    SLUICE_VERSION,
    ProtocolMismatch,
    key_path,
    mismatch_message,
    proof,
    set_timeouts,
    socket_path,
    write_key,
)


class ShardServer:
    """Serves `store` to other processes until `close()`; one thread per connection."""

    def __init__(self, store: Any, store_dir: Path, deadline_s: float = 20.0) -> None:
        self.store = store
        self.deadline_s = deadline_s
        self.address = socket_path(store_dir)
        self._key = write_key(key_path(store_dir))  # before the socket listens
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
        if not hmac.compare_digest(answer[:32], proof(self._key, b"client", nonce)):
            connection.send_bytes(b"refused")
            return False
        connection.send_bytes(proof(self._key, b"owner", answer[32:64]))
        hello = connection.recv()
        if not (isinstance(hello, tuple) and len(hello) == 4 and hello[0] == "hello"):
            reason = "a client without a protocol version (an older Sluice)"
        elif hello[2][0] != PROTOCOL:
            reason = f"Sluice {hello[2][1]} (channel protocol {hello[2][0]})"
        else:
            connection.send(("ok", (PROTOCOL, SLUICE_VERSION)))
            return True
        connection.send(("error", ProtocolMismatch(mismatch_message(reason))))
        return False

    def _serve(self, sock: socket.socket) -> None:
        # Each read of the handshake within the deadline; afterwards a client may stay idle
        # between calls as long as it likes, but a reply it does not read fails in time.
        set_timeouts(sock, self.deadline_s, self.deadline_s)
        connection = Connection(os.dup(sock.fileno()))
        peer = _Peer(sock)
        try:
            if not self._handshake(connection):
                return
            set_timeouts(sock, None, self.deadline_s)
            with self._lock:
                self._connections[connection] = peer
            if self._closed.is_set():  # `close()` ran before this connection was listed
                return
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
            if self._closed.is_set():  # closing: hung up unanswered, the client goes elsewhere
                return
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
            for connection, peer in list(self._connections.items()):
                with contextlib.suppress(OSError):
                    # Wakes the thread reading it and tells the client at once (closing the
                    # duplicate alone would leave the socket open while that thread waits).
                    peer.sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    connection.close()
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()


class _Peer:
    """A connection's state the heartbeat reads: since when its call runs, and the lock that
    keeps a heartbeat and a reply from interleaving."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy_since: float | None = None
        self.sending = threading.Lock()
