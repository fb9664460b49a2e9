"""POST /feedback: what users did with an answer's hits, from the application that showed them.

Checked against the answer as the query log has it (`request_id`): only the key that asked may
speak of its answer (another key's, or an unknown id, is 404: a key cannot learn which ids
exist), and only of hits that answer gave (422). An answer is found at once by the API process
that gave it (its unwritten records), and by every other process once that one's query log has
written it out (`SLUICE_QUERY_LOG_FLUSH_S`, 30 s by default). Each item is a row of the
feedback log (Parquet, `feedback/` in the data dir, joinable to the query log on
`request_id`); a repeated `event_id` of the same key is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from retrieval_api.access import Caller
from retrieval_api.deps import ServiceState, State
from retrieval_api.routes.responses import EVERY_ROUTE, error_responses
from sluice_client.feedback import FeedbackReceipt, FeedbackRequest

router = APIRouter()


@dataclass(frozen=True)
class _Answer:
    tenants: tuple[str, ...] | None
    index: str | None
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]


@router.post(
    "/feedback",
    summary="Say what users did with an answer's hits: clicked, relevant, not relevant",
    response_model=FeedbackReceipt,
    responses={
        **error_responses(
            *EVERY_ROUTE, 401, 403, 404, 409, 422, 429,
            s404="No answer with that request id to this key (yet: see the description)",
            s409="This server keeps no query log (SLUICE_QUERY_LOG=false): feedback cannot be "
            "checked against the answer",
            s422="The request does not match the schema, or names hits the answer did not give",
        ),
    },
)  # fmt: skip
async def feedback(body: FeedbackRequest, state: State, request: Request) -> FeedbackReceipt:
    caller: Caller = request.app.state.access.caller(request)
    if state.query_log is None or state.feedback is None:
        raise HTTPException(409, "feedback needs the query log, and this server keeps none")
    answer = await run_in_threadpool(_answer, state, body.request_id, caller)
    if answer is None:
        raise HTTPException(
            404,
            f"no answer '{body.request_id}' to this key; an answer another API process gave is "
            "found once its query log is written out (SLUICE_QUERY_LOG_FLUSH_S)",
        )
    strangers = [
        item.chunk_id or item.doc_id
        for item in body.items
        if (item.chunk_id is not None and item.chunk_id not in answer.chunk_ids)
        or (item.doc_id is not None and item.doc_id not in answer.doc_ids)
    ]
    if strangers:
        raise HTTPException(422, f"not hits of that answer: {', '.join(map(str, strangers[:10]))}")
    log, events = state.feedback
    key_id = caller.key.key_id if caller.key else None
    taken = await run_in_threadpool(
        events.take, key_id, body.event_id, body.request_id, len(body.items)
    )
    if taken:
        now = datetime.now(UTC)
        for item in body.items:
            place = (
                answer.chunk_ids.index(item.chunk_id)
                if item.chunk_id is not None
                else answer.doc_ids.index(str(item.doc_id))
            )
            log.record(
                {
                    "request_id": body.request_id,
                    "event_id": body.event_id,
                    "time": now,
                    "key_id": key_id,
                    "tenants": list(answer.tenants) if answer.tenants is not None else None,
                    "index": answer.index,
                    "chunk_id": answer.chunk_ids[place],
                    "doc_id": answer.doc_ids[place],
                    "label": item.label,
                    "rank": item.rank,
                    "answer_rank": place + 1,
                    "dwell_ms": item.dwell_ms,
                }
            )
            if request.app.state.metrics is not None:
                request.app.state.metrics.feedback.labels(item.label).inc()
    return FeedbackReceipt(
        request_id=body.request_id,
        event_id=body.event_id,
        items=len(body.items) if taken else 0,
        duplicate=not taken,
    )


def _answer(state: ServiceState, request_id: str, caller: Caller) -> _Answer | None:
    """This key's newest answer under `request_id`: unwritten in this process, else indexed."""
    key_id = caller.key.key_id if caller.key else None
    assert state.query_log is not None
    for row in state.query_log.pending(request_id):
        if row.get("key_id") == key_id:
            return _of(row)
    index = state.query_log.index
    found = [a for a in (index.answers(request_id) if index else []) if a.key_id == key_id]
    if not found:
        return None
    first = found[0]
    return _Answer(first.tenants, first.index, first.chunk_ids, first.doc_ids)


def _of(row: dict[str, Any]) -> _Answer:
    tenants = row.get("tenants")
    return _Answer(
        None if tenants is None else tuple(tenants),
        row.get("index"),
        tuple(row.get("chunk_ids") or ()),
        tuple(row.get("doc_ids") or ()),
    )
