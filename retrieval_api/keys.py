"""API keys: created and revoked by `sluice keys`, checked by the API on every request.

A key reads `slk_<id>_<secret>`: the id (12 base32 characters) is public and finds the record;
the secret (43 base62 characters, 256 bits from `secrets`) is shown once and stored only as its
SHA-256. A random 256-bit secret cannot be guessed, so a slow password hash (argon2, bcrypt:
~150 ms a check here) would add nothing but a way to burn the server's CPU with bad keys; the
check is one SHA-256 and `hmac.compare_digest` (~1 µs), the same work for an unknown id. The
records live in one JSON file in the data dir, replaced atomically, which the API rereads when
it changes; or, with the state in PostgreSQL, in a table there, read per request. Either way a
revoked key stops working with the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from sqlalchemy import text

from sluice_client.request import TENANT_PATTERN
from state.database import StateDatabase
from state.schema import ensure_schema

Scope = Literal["retrieve", "admin"]
ALL_TENANTS = "*"
KEY_PATTERN = re.compile(r"slk_([a-z2-7]{12})_([A-Za-z0-9]{43})")
_BASE62 = string.ascii_letters + string.digits
_UNKNOWN = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    secret_sha256: str
    tenants: tuple[str, ...]
    """The tenants whose documents the key reads; `*`: all of them."""
    scope: Scope = "retrieve"
    rate_per_s: float | None = None
    """Sustained requests per second (a token bucket of `burst`); None: no per-key limit."""
    burst: int | None = None
    name: str = ""
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    revoked_at: float | None = None

    @property
    def all_tenants(self) -> bool:
        return ALL_TENANTS in self.tenants or self.scope == "admin"

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, object]:
        """Everything but the hash, for `sluice keys list`."""
        shown = asdict(self)
        shown.pop("secret_sha256")
        return shown


class KeyStoreError(ValueError):
    """A key operation that cannot be done (an unknown id, a bad tenant name)."""


class KeyStore:
    """>>> store = KeyStore(Path(".sluice/api-keys.json"))  # doctest: +SKIP

    The records are a JSON file of the data dir (one machine), or with the state in PostgreSQL
    a table there (`state/`), which API replicas on every machine read."""

    def __init__(self, location: Path | StateDatabase) -> None:
        self._rows: _FileRows | _DatabaseRows = (
            _FileRows(location) if isinstance(location, Path) else _DatabaseRows(location)
        )

    # -- what the API does on each request ---------------------------------------------------
    def verify(self, presented: str, now: float | None = None) -> KeyRecord | None:
        """The key's record if `presented` is a usable key, else None; constant time in the
        secret, and the same work whether or not the id exists."""
        match = KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        record = self._rows.one(key_id)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        matches = hmac.compare_digest(digest, record.secret_sha256 if record else _UNKNOWN)
        if record is None or not matches:
            return None
        return record if record.usable(time.time() if now is None else now) else None

    def records(self) -> dict[str, KeyRecord]:
        return self._rows.all()

    # -- what `sluice keys` does -------------------------------------------------------------
    def create(
        self,
        tenants: Sequence[str],
        scope: Scope = "retrieve",
        rate_per_s: float | None = None,
        burst: int | None = None,
        expires_at: float | None = None,
        name: str = "",
    ) -> tuple[str, KeyRecord]:
        """The new key (its only appearance) and its record."""
        for tenant in tenants:
            if tenant != ALL_TENANTS and not re.match(TENANT_PATTERN, tenant):
                raise KeyStoreError(f"'{tenant}' is not a tenant name (letters, digits, _ . -)")
        if not tenants and scope != "admin":
            raise KeyStoreError("a key needs a tenant (--tenant), or the admin scope")
        if expires_at is not None and expires_at <= time.time():
            when = datetime.fromtimestamp(expires_at, UTC).isoformat(timespec="seconds")
            raise KeyStoreError(
                f"the expiry {when} is not in the future, so the key would never work; "
                "give a later date or a duration (--expires 30d)"
            )
        key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(12))
        secret = "".join(secrets.choice(_BASE62) for _ in range(43))
        record = KeyRecord(
            key_id=key_id,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            tenants=tuple(tenants) or (ALL_TENANTS,),
            scope=scope,
            rate_per_s=rate_per_s,
            burst=burst,
            name=name,
            expires_at=expires_at,
        )
        self._rows.change(lambda records: {**records, key_id: record})
        return f"slk_{key_id}_{secret}", record

    def revoke(self, key_id: str) -> KeyRecord:
        revoked: list[KeyRecord] = []

        def revoking(records: dict[str, KeyRecord]) -> dict[str, KeyRecord]:
            if key_id not in records:
                known = ", ".join(sorted(records)) or "none yet"
                raise KeyStoreError(f"no key with id '{key_id}' (keys: {known})")
            revoked.append(replace(records[key_id], revoked_at=time.time()))
            return {**records, key_id: revoked[0]}

        self._rows.change(revoking)
        return revoked[0]


Change = Callable[[dict[str, KeyRecord]], dict[str, KeyRecord]]


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{**row, "tenants": tuple(row["tenants"])})


class _FileRows:
    """One JSON file, replaced atomically under a file lock; reread when it changed (size or
    modification time), else from memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, KeyRecord] = {}
        self._seen: tuple[int, int] | None = None

    def one(self, key_id: str) -> KeyRecord | None:
        return self.all().get(key_id)

    def all(self) -> dict[str, KeyRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._seen = {}, None
            return self._records
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            rows = json.loads(self.path.read_text())
            self._records = {row["key_id"]: _record(row) for row in rows}
            self._seen = seen
        return self._records

    def change(self, change: Change) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path.with_suffix(".lock"), timeout=30):
            self._seen = None  # a writer always reads the file itself
            records = change(dict(self.all()))
            rows = [asdict(record) for record in records.values()]
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(rows, indent=1))
            os.chmod(temporary, 0o600)  # hashes only, but nobody else's business
            os.replace(temporary, self.path)


class _DatabaseRows:
    """A row per key in the shared state (`api_keys`); each request reads its key's row, so a
    revocation holds from the next request on every replica."""

    def __init__(self, db: StateDatabase) -> None:
        self._db = db
        ensure_schema(db)

    def one(self, key_id: str) -> KeyRecord | None:
        with self._db.reading() as db:
            found = db.execute(
                text("SELECT record FROM api_keys WHERE key_id = :id"), {"id": key_id}
            ).scalar()
        return _record(json.loads(found)) if found else None

    def all(self) -> dict[str, KeyRecord]:
        with self._db.reading() as db:
            rows = db.execute(text("SELECT record FROM api_keys")).scalars().all()
        records = [_record(json.loads(row)) for row in rows]
        return {record.key_id: record for record in records}

    def change(self, change: Change) -> None:
        with self._db.transaction() as db:
            if self._db.dialect == "postgresql":  # writers one at a time, readers never wait
                db.execute(text("LOCK TABLE api_keys IN EXCLUSIVE MODE"))
            rows = db.execute(text("SELECT record FROM api_keys")).scalars().all()
            before = {r.key_id: r for r in (_record(json.loads(row)) for row in rows)}
            for key_id, record in change(dict(before)).items():
                if before.get(key_id) != record:
                    db.execute(
                        text(
                            "INSERT INTO api_keys (key_id, record) VALUES (:id, :record)"
                            " ON CONFLICT (key_id) DO UPDATE SET record = excluded.record"
                        ),
                        {"id": key_id, "record": json.dumps(asdict(record))},
                    )
