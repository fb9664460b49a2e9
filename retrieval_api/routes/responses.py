"""The error answers each route declares in the OpenAPI schema: every status it can answer, with
its body, so that a client generated from the schema knows them all.

Some come from the route itself (401, 403, 410, 422, 429), some from what runs before every
route: the Host check (400, as text), the body bounds (408, 413; `limits.BodyGuard` reads every
request's body, a GET's too) and the concurrency limit (503; `/health` and `/ready` are not
counted, but `/ready` answers 503 while the index is not ready).
"""

from __future__ import annotations

from typing import Any

from sluice_client.response import ErrorResponse

WHY = {
    400: "The Host header is not one this API answers (a text body), or the body is not JSON",
    401: "No API key, or one that is unknown, revoked or expired",
    403: "The key does not grant what the request asks for",
    404: "No such resource",
    409: "The server is not set up for this request",
    408: "The request (head and body) did not arrive in time",
    410: "The cursor's index version is gone: the index changed since its first page",
    413: "The body is larger than the server accepts",
    422: "The request does not match the schema",
    429: "The key's rate limit is exceeded (see Retry-After)",
    500: "A server error",
    503: "The server is at its limit of searches or connections, or the index or the state"
    " database is unavailable for now (see Retry-After)",
}
_HOST_REFUSED = {"text/plain": {"schema": {"type": "string", "example": "Invalid host header"}}}


def error_responses(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route answering `statuses`; `why` overrides a description, by the
    status as a keyword (`s403="…"`)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": why.get(f"s{status}", WHY[status]),
        }
        if status == 400:
            entry["content"] = _HOST_REFUSED
        declared[status] = entry
    return declared


EVERY_ROUTE = (400, 408, 413, 503)
"""What any route may answer before it runs: the Host check, the body bounds, and the
connection caps (503 `too_many_connections`, `retrieval_api/connections.py`)."""
