"""Paging cursors: where the next page of a ranking starts, bound to the index version.

A cursor is opaque to clients: `<payload>.<signature>`, both base64url. The payload (JSON) names
the collection version and its write stamp when the first page was answered, the depth the
ranking was computed to (the candidate pool, pinned so that every page cuts the same ranking),
the offset of the next page, and a fingerprint of the request it continues (everything but
`top_k` and `cursor`, and the caller's tenants). The signature is an HMAC-SHA256 of the payload
with the server's cursor key (`cursor_key`), so a client cannot forge a cursor that buys a
deeper ranking than the server would compute; a signed pool is still held to the server's own
maximum. A cursor is not a credential: the key of each request still decides what it may read.

>>> codec = CursorCodec(b"a key of 16 bytes or more", max_pool=1000)
>>> token = codec.encode(Cursor("docs__v1", "s1", 200, 10, "ab12"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import HTTPException

from config.settings import Settings
from sluice_client.request import RetrieveRequest

VERSION = 2


@dataclass(frozen=True)
class Cursor:
    collection: str
    stamp: str
    pool: int
    offset: int
    request: str
    v: int = VERSION


class InvalidCursor(HTTPException):
    """400 `invalid_cursor`: a cursor the schema allows but this server did not issue for this
    request (422 stays what the schema itself refuses)."""

    code = "invalid_cursor"

    def __init__(self, why: str) -> None:
        super().__init__(400, f"cursor: {why}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs the cursors this server issues and checks the ones it is given."""

    def __init__(self, key: bytes, max_pool: int) -> None:
        if len(key) < 16:
            raise ValueError("a cursor key needs at least 16 bytes")
        self._key, self.max_pool = key, max_pool

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def encode(self, cursor: Cursor) -> str:
        payload = _b64(json.dumps(asdict(cursor), separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def decode(self, token: str, body: RetrieveRequest, tenants: Sequence[str] | None) -> Cursor:
        """The cursor, or a 400 that says what is wrong with it."""
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidCursor("not a cursor this server issued (its signature does not match)")
        try:
            cursor = Cursor(**json.loads(_unb64(payload)))
            valid = (
                cursor.v == VERSION
                and all(isinstance(v, str) for v in (cursor.collection, cursor.stamp))
                and isinstance(cursor.request, str)
                and all(type(v) is int and v >= 0 for v in (cursor.pool, cursor.offset))
            )
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise InvalidCursor("not a cursor this server issued")
        if not 1 <= cursor.pool <= self.max_pool:
            raise InvalidCursor(
                f"its depth ({cursor.pool}) is beyond this server's candidate pool limit "
                f"({self.max_pool}); start again without a cursor"
            )
        if cursor.request != fingerprint(body, tenants):
            raise InvalidCursor(
                "it continues a different request; repeat the query and options of the "
                "request that returned it (only top_k may change)"
            )
        return cursor


def fingerprint(body: RetrieveRequest, tenants: Sequence[str] | None) -> str:
    """What a continued request must repeat: the query and every option but the page size."""
    asked = body.model_dump(mode="json", exclude={"cursor", "top_k"})
    scope = None if tenants is None else sorted(tenants)
    text = json.dumps([asked, scope], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def expired(cursor: Cursor, collection: str, stamp: str) -> HTTPException:
    what = (
        "the index was switched to another version"
        if collection != cursor.collection
        else "the index changed (documents were added, updated or deleted)"
    )
    return HTTPException(
        410, f"cursor expired: {what} since the first page; start again without a cursor"
    )


def cursor_key(settings: Settings) -> bytes:
    """`SLUICE_CURSOR_SECRET`, else the data dir's own secret."""
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    return shared_secret(settings.cursor_secret_path)


def shared_secret(path: Path) -> bytes:
    """A random secret kept in `path` (mode 0600), made by the first process that asks: it
    writes a file of its own and links it into place, which fails if another process's link
    came first (then that one is read), so every process sees one secret, and never half of
    one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process's came first
                os.link(mine, path)
        finally:
            mine.unlink(missing_ok=True)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no cursor secret; delete it, and one is made anew")
    return secret.encode()
