"""Paging cursors: where the next page of a ranking starts, bound to the index version.

A cursor is opaque to clients (base64url JSON). It names the collection version and its write
stamp when the first page was answered, the depth the ranking was computed to (the candidate
pool, pinned so that every page cuts the same ranking), the offset of the next page, and a
fingerprint of the request it continues (everything but `top_k` and `cursor`, and the caller's
tenants). A cursor is not a credential: the key of each request still decides what it may read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from fastapi import HTTPException

from retrieval_api.schemas import RetrieveRequest

VERSION = 1


@dataclass(frozen=True)
class Cursor:
    collection: str
    stamp: str
    pool: int
    offset: int
    request: str
    v: int = VERSION

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fingerprint(body: RetrieveRequest, tenants: Sequence[str] | None) -> str:
    """What a continued request must repeat: the query and every option but the page size."""
    asked = body.model_dump(mode="json", exclude={"cursor", "top_k"})
    scope = None if tenants is None else sorted(tenants)
    text = json.dumps([asked, scope], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def decode(token: str, body: RetrieveRequest, tenants: Sequence[str] | None) -> Cursor:
    """The cursor, or a 422 that says what is wrong with it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = Cursor(**json.loads(raw))
        valid = (
            cursor.v == VERSION
            and all(isinstance(v, str) for v in (cursor.collection, cursor.stamp, cursor.request))
            and all(type(v) is int and v >= 0 for v in (cursor.pool, cursor.offset))
            and 1 <= cursor.pool <= 100_000
        )
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise HTTPException(422, "cursor: not a cursor this server issued")
    if cursor.request != fingerprint(body, tenants):
        raise HTTPException(
            422,
            "cursor: it continues a different request; repeat the query and options of the "
            "request that returned it (only top_k may change)",
        )
    return cursor


def expired(cursor: Cursor, collection: str, stamp: str) -> HTTPException:
    what = (
        "the index was switched to another version"
        if collection != cursor.collection
        else "the index changed (documents were added, updated or deleted)"
    )
    return HTTPException(
        410, f"cursor expired: {what} since the first page; start again without a cursor"
    )
