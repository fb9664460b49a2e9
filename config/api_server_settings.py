"""The settings of the API server process: where it listens, who may call, and the bounds on
requests and connections. Part of `Settings` (which reads them from `SLUICE_*` like the rest);
a group of their own only to keep each file to one subject."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class ApiServerSettings(BaseModel):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    auth: Literal["auto", "required", "off"] = Field(
        default="auto",
        description="API keys on /retrieve: auto requires them unless the API binds a loopback "
        "address; `sluice keys create` makes them.",
    )
    ready_needs_key: bool = Field(
        default=False,
        description="/ready answers only callers with an API key where keys are required "
        "(/health always answers everyone).",
    )
    metrics_needs_key: bool = Field(
        default=True,
        description="/metrics answers only admin keys where keys are required.",
    )
    max_body_bytes: int = Field(
        default=65536, ge=1024, description="Larger request bodies get 413 before being read."
    )
    client_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a whole request, head and body, counted from "
        "the connection's opening or its last answer; then the connection is closed (head "
        "unfinished) or gets 408 (body unfinished).",
    )
    keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description="An idle keep-alive connection (no new request after an answer) is closed "
        "after this long.",
    )
    max_connections: int = Field(
        default=512,
        ge=1,
        description="Open connections in all. At the cap, the connection idle the longest is "
        "closed to make room for a new one; with none idle, the new one gets 503 and is closed.",
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=1,
        description="Open connections from one client address, the same way: its own longest "
        "idle connection makes room, else the new one gets 503. Behind a reverse proxy every "
        "connection comes from the proxy's address.",
    )
    warm_up_searches: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="Searches `sluice serve` runs on start, before taking requests, so the "
        "first callers do not wait for a large index to page in (0: none).",
    )
    max_concurrent_searches: int | None = Field(
        default=None,
        ge=1,
        description="Searches served at once; more wait in the queue below, then get 503. "
        "Unset: one per CPU core, at least 2 (a search is CPU work under one GIL: more at once "
        "only makes the slowest slower; docs/benchmarks.md, 'Concurrent requests').",
    )
    max_queued_searches: int = Field(
        default=256,
        ge=0,
        description="Searches that wait, in arrival order, for one of the served ones to "
        "finish; one more gets 503 with Retry-After at once (0: no waiting).",
    )
    search_queue_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="The longest a search waits in the queue before it gets 503 with Retry-After.",
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host header values the API answers (others get 400, against DNS "
        "rebinding); unset: localhost names when it binds loopback, any host otherwise.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS); empty: none.",
    )
    cursor_secret: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Key of the HMAC that signs /retrieve cursors; unset: a random one made "
        "once in the data dir (`cursor-secret`, mode 0600), shared by every API process on "
        "it. Set the same value on API servers that share no data dir.",
    )
