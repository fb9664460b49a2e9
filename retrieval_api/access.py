"""Who is calling, and how much: API keys, tenants and per-key rate limits on each request.

Auth is on whenever the API is reachable from a network (`SLUICE_AUTH=auto` and a bind address
other than loopback), or always (`required`); `off` serves without keys, every tenant, as the
loopback demo does. A key presented where auth is off is still checked: it scopes the answer.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from composition.components import Components
from config.settings import Settings
from retrieval_api.keys import KeyRecord, KeyStore
from retrieval_api.rate_buckets import RateBuckets


def auth_required(settings: Settings) -> bool:
    if settings.auth != "auto":
        return settings.auth == "required"
    return not is_loopback(settings.api_host)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def allowed_hosts(settings: Settings) -> list[str]:
    """A service on loopback answers only its own names: a web page whose domain resolves to
    127.0.0.1 (DNS rebinding) gets 400. Elsewhere keys guard it, and any host is answered."""
    if settings.allowed_hosts is not None:
        return settings.allowed_hosts
    return list(LOOPBACK_HOSTS) if is_loopback(settings.api_host) else ["*"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """The key behind a request (None: auth off and no key given) and what it may read."""

    key: KeyRecord | None
    tenants: tuple[str, ...] | None
    """The tenants a search is confined to; None: every tenant."""

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.scope == "admin"

    def narrowed(self, asked: list[str] | None) -> Caller:
        """The request may ask for fewer tenants than the key grants, never for others."""
        if not asked:
            return self
        if self.tenants is not None and (refused := sorted(set(asked) - set(self.tenants))):
            raise HTTPException(403, f"this key does not grant tenant(s) {', '.join(refused)}")
        return Caller(self.key, tuple(dict.fromkeys(asked)))


ANONYMOUS = Caller(key=None, tenants=None)


class RateLimiter:
    """A bucket per key, `rate_per_s` sustained and `burst` at once, shared by every API
    process on the data dir (`rate_buckets.py`)."""

    def __init__(self, buckets: RateBuckets) -> None:
        self.buckets = buckets

    def admit(self, key: KeyRecord) -> dict[str, str]:
        """Rate-limit headers for an admitted request; raises 429 with Retry-After if not."""
        if not key.rate_per_s:
            return {}
        burst = key.burst or max(1, math.ceil(key.rate_per_s))
        decision = self.buckets.take(key.key_id, key.rate_per_s, burst)
        headers = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
        }
        if not decision.admitted:
            wait_s = decision.retry_after_s
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
            headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + wait_s))
            raise HTTPException(
                429, f"rate limit of {key.rate_per_s:g}/s for this key exceeded", headers
            )
        return headers


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def key_store(settings: Settings) -> KeyStore:
    """The API keys: the data dir's file, or with the state in PostgreSQL its table, which
    replicas on every machine read."""
    if settings.state_url is not None:
        return KeyStore(Components(settings).state("shared"))
    return KeyStore(settings.api_keys_path)


@dataclass
class Access:
    """What the app holds to decide who may call: the key store, the limiter, the auth mode."""

    keys: KeyStore
    limiter: RateLimiter
    required: bool

    @classmethod
    def of(cls, settings: Settings) -> Access:
        limiter = RateLimiter(RateBuckets(Components(settings).state("shared")))
        return cls(key_store(settings), limiter, auth_required(settings))

    def caller(self, request: Request, scope: str = "retrieve") -> Caller:
        """The request's key, checked (401), within its rate (429) and of `scope` (403; admin
        has every scope); anonymous where keys are not required and none is given."""
        presented = presented_key(request)
        if presented is None:
            if self.required:
                raise HTTPException(
                    401,
                    "an API key is required: send `Authorization: Bearer <key>` "
                    "(keys come from `sluice keys create`)",
                    {"WWW-Authenticate": "Bearer"},
                )
            return ANONYMOUS
        record = self.keys.verify(presented)
        if record is None:
            raise HTTPException(
                401, "the API key is unknown, revoked or expired", {"WWW-Authenticate": "Bearer"}
            )
        request.state.rate_headers = self.limiter.admit(record)
        if record.scope not in (scope, "admin"):
            raise HTTPException(
                403,
                f"this key's scope is '{record.scope}'; this needs '{scope}' "
                f"(sluice keys create --scope {scope})",
            )
        return Caller(record, None if record.all_tenants else record.tenants)


def _retriever(request: Request) -> Caller:
    access: Access = request.app.state.access
    return access.caller(request)


Retriever = Annotated[Caller, Depends(_retriever)]
