"""API keys: created and revoked by `sluice keys`, checked by the API on every request.

A key reads `slk_<id>_<secret>`: the id (12 base32 characters) is public and finds the record;
the secret (43 base62 characters, 256 bits from `secrets`) is shown once and stored only as its
SHA-256. A random 256-bit secret cannot be guessed, so a slow password hash (argon2, bcrypt:
~150 ms a check here) would add nothing but a way to burn the server's CPU with bad keys; the
check is one SHA-256 and `hmac.compare_digest` (~1 µs), the same work for an unknown id. The
records live in one JSON file in the data dir, replaced atomically; the API rereads it when it
changes, so a revoked key stops working with the next request.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from filelock import FileLock

from sluice_client.request import TENANT_PATTERN

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
    """>>> store = KeyStore(Path(".sluice/api-keys.json"))  # doctest: +SKIP"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, KeyRecord] = {}
        self._seen: tuple[int, int] | None = None

    # -- what the API does on each request ---------------------------------------------------
    def verify(self, presented: str, now: float | None = None) -> KeyRecord | None:
        """The key's record if `presented` is a usable key, else None; constant time in the
        secret, and the same work whether or not the id exists."""
        match = KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        record = self.records().get(key_id)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        matches = hmac.compare_digest(digest, record.secret_sha256 if record else _UNKNOWN)
        if record is None or not matches:
            return None
        return record if record.usable(time.time() if now is None else now) else None

    def records(self) -> dict[str, KeyRecord]:
        """Reread when the file changed (size or modification time), else from memory."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._seen = {}, None
            return self._records
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            rows = json.loads(self.path.read_text())
            self._records = {
                row["key_id"]: KeyRecord(**{**row, "tenants": tuple(row["tenants"])})
                for row in rows
            }
            self._seen = seen
        return self._records

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
        with self._locked():
            self._write({**self._read(), key_id: record})
        return f"slk_{key_id}_{secret}", record

    def revoke(self, key_id: str) -> KeyRecord:
        with self._locked():
            records = self._read()
            if key_id not in records:
                known = ", ".join(sorted(records)) or "none yet"
                raise KeyStoreError(f"no key with id '{key_id}' (keys: {known})")
            revoked = replace(records[key_id], revoked_at=time.time())
            self._write({**records, key_id: revoked})
        return revoked

    def _locked(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(self.path.with_suffix(".lock"), timeout=30)

    def _read(self) -> dict[str, KeyRecord]:
        self._seen = None  # a writer always reads the file itself
        return dict(self.records())

    def _write(self, records: dict[str, KeyRecord]) -> None:
        rows = [asdict(record) for record in records.values()]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(rows, indent=1))
        os.chmod(temporary, 0o600)  # hashes only, but nobody else's business
        os.replace(temporary, self.path)
