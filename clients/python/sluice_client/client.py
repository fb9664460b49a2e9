"""A typed Python client for `POST /retrieve` and `POST /feedback`, sync and async, with retries.

    from sluice_client import SluiceClient

    with SluiceClient("http://127.0.0.1:8000", api_key="slk_...") as sluice:
        answer = sluice.retrieve("how do I rotate the keys?", top_k=5, mode="hybrid")
        for hit in answer.hits:
            print(hit.score, hit.uri, hit.text[:80])

Every keyword after the query is sent as a field of the request body as it is (`top_k`,
`mode`, `filters`, `rerank`, `group_by`, `expand`, `mmr`, `min_score`, `cursor`, ...), so the
server's schema, not this module, says what is valid; an option given as None is left out (the
server's default). The answer is parsed into the API's own `RetrieveResponse`.

    sluice.feedback(answer.request_id, [{"chunk_id": hit.chunk_id, "label": "clicked", "rank": 1}])

tells the server what the user did with a hit (`docs/feedback.md`); its retries are stored once.

429 and 503 answers and connection failures are retried up to `retries` times, waiting what the
server's `Retry-After` says (at most `max_retry_after` seconds), else backing off exponentially
with jitter. Any other error raises `SluiceAPIError` with the server's status, code and message.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import httpx
from pydantic import BaseModel

from sluice_client.feedback import FeedbackItem, FeedbackReceipt, FeedbackRequest
from sluice_client.response import RetrieveResponse

RETRIED_STATUSES = frozenset({429, 503})
# Failures where the request did not reach the search (or the connection broke under it):
# `/retrieve` reads nothing it changes, so sending it again is safe. A read timeout is not
# retried: the search may still be running, and would only be run again.
RETRIED_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
BACKOFF_BASE_S = 0.5
_JITTER = random.Random()


class SluiceError(Exception):
    """Any failure of a call to Sluice."""


class SluiceConnectionError(SluiceError):
    """The server could not be reached (or broke the connection), after every retry."""


class SluiceAPIError(SluiceError):
    """The server answered with an error: `{"error": {"code", "message", "details"}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after
        """Seconds the server asked to wait (429, 503), when it said."""


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date; None when absent or unreadable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(
    attempt: int, retry_after: float | None, cap_s: float, rng: random.Random | None = None
) -> float:
    """Seconds before retry number `attempt` (0 for the first): what the server asked for,
    else `BACKOFF_BASE_S * 2**attempt` with its upper half jittered; never more than `cap_s`."""
    if retry_after is not None:
        return min(retry_after, cap_s)
    backoff = min(BACKOFF_BASE_S * 2.0**attempt, cap_s)
    return backoff / 2 + (rng or _JITTER).uniform(0, backoff / 2)


def request_body(query: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: the query and every option that is not None (pydantic models, such as
    the API's own `Filters`, as the fields that were set)."""
    body: dict[str, Any] = {"query": query}
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_unset=True)
        body[name] = value
    return body


def feedback_body(
    request_id: str, items: Sequence[FeedbackItem | Mapping[str, Any]], event_id: str | None
) -> dict[str, Any]:
    """Checked here (a bad item raises pydantic's ValidationError before anything is sent)."""
    request = FeedbackRequest(
        request_id=request_id,
        event_id=event_id or uuid.uuid4().hex,
        items=[FeedbackItem.model_validate(item) for item in items],
    )
    return request.model_dump(mode="json", exclude_none=True)


def api_error(response: httpx.Response) -> SluiceAPIError:
    """The error an answer other than 200 stands for, from the API's error body where it has
    one (a proxy in between may answer with anything else)."""
    code, message, details = "http_error", response.text[:500] or response.reason_phrase, None
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details")
    except (ValueError, KeyError, TypeError):
        pass
    return SluiceAPIError(
        response.status_code,
        code,
        message,
        details,
        response.headers.get("x-request-id"),
        retry_after_s(response.headers),
    )


Answer = TypeVar("Answer", bound=BaseModel)
Attempt = Generator[float | None, httpx.Response | Exception, Answer]
"""The one retry loop both clients drive: it yields None to have the request sent (and is sent
back the response, or the connection error), or a number of seconds to sleep; it returns the
answer or raises. Sync and async differ only in how they send and sleep."""


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        max_retry_after: float,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.retries = retries
        self.max_retry_after = max_retry_after
        self._options: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "timeout": httpx.Timeout(timeout),
            "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
        }

    def _attempts(self, model: type[Answer]) -> Attempt[Answer]:
        attempt = 0
        while True:
            outcome = yield None
            if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                return model.model_validate_json(outcome.content)
            if isinstance(outcome, httpx.Response):
                failure: SluiceError = api_error(outcome)
                retry_after = retry_after_s(outcome.headers)
                retried = outcome.status_code in RETRIED_STATUSES
                cause: Exception | None = None
            else:
                failure = SluiceConnectionError(f"{self._options['base_url']}: {outcome}")
                retry_after, retried, cause = None, True, outcome
            if not retried or attempt >= self.retries:
                raise failure from cause
            yield retry_delay(attempt, retry_after, self.max_retry_after)
            attempt += 1


class SluiceClient(_Base):
    """`POST /retrieve` of one Sluice server; the key is sent as `Authorization: Bearer`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_after: float = 30.0,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retries, max_retry_after)
        self._http = httpx.Client(**self._options)

    def retrieve(self, query: str, **options: Any) -> RetrieveResponse:
        return self._post("/retrieve", request_body(query, options), RetrieveResponse)

    def feedback(
        self,
        request_id: str,
        items: Sequence[FeedbackItem | Mapping[str, Any]],
        event_id: str | None = None,
    ) -> FeedbackReceipt:
        """What users did with an answer's hits (`docs/feedback.md`). `event_id`: yours, else a
        new one; this call's retries send the same, so the server stores it once."""
        return self._post("/feedback", feedback_body(request_id, items, event_id), FeedbackReceipt)

    def _post(self, path: str, body: dict[str, Any], model: type[Answer]) -> Answer:
        attempts = self._attempts(model)
        step = next(attempts)
        try:
            while True:
                if step is not None:
                    time.sleep(step)
                    step = next(attempts)
                    continue
                try:
                    sent: httpx.Response | Exception = self._http.post(path, json=body)
                except RETRIED_ERRORS as error:
                    sent = error
                step = attempts.send(sent)
        except StopIteration as done:
            return cast(Answer, done.value)

    def pages(self, query: str, **options: Any) -> Iterator[RetrieveResponse]:
        """Each page of one ranking (`top_k` hits each), following `next_cursor`."""
        while True:
            page = self.retrieve(query, **options)
            yield page
            if page.next_cursor is None:
                return
            options["cursor"] = page.next_cursor

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class AsyncSluiceClient(_Base):
    """`SluiceClient` for asyncio: `await client.retrieve(...)`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_after: float = 30.0,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retries, max_retry_after)
        self._http = httpx.AsyncClient(**self._options)

    async def retrieve(self, query: str, **options: Any) -> RetrieveResponse:
        return await self._post("/retrieve", request_body(query, options), RetrieveResponse)

    async def feedback(
        self,
        request_id: str,
        items: Sequence[FeedbackItem | Mapping[str, Any]],
        event_id: str | None = None,
    ) -> FeedbackReceipt:
        """`SluiceClient.feedback`."""
        body = feedback_body(request_id, items, event_id)
        return await self._post("/feedback", body, FeedbackReceipt)

    async def _post(self, path: str, body: dict[str, Any], model: type[Answer]) -> Answer:
        attempts = self._attempts(model)
        step = next(attempts)
        try:
            while True:
                if step is not None:
                    await asyncio.sleep(step)
                    step = next(attempts)
                    continue
                try:
                    sent: httpx.Response | Exception = await self._http.post(path, json=body)
                except RETRIED_ERRORS as error:
                    sent = error
                step = attempts.send(sent)
        except StopIteration as done:
            return cast(Answer, done.value)

    async def pages(self, query: str, **options: Any) -> AsyncIterator[RetrieveResponse]:
        """Each page of one ranking (`top_k` hits each), following `next_cursor`."""
        while True:
            page = await self.retrieve(query, **options)
            yield page
            if page.next_cursor is None:
                return
            options["cursor"] = page.next_cursor

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()
