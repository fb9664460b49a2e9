"""`/retrieve` asked in a loop from a thread while other processes start, stop or die: what the
tests of several processes on one data dir watch an API with."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    at: float
    """`time.monotonic()` when it came."""
    status: int
    """0: no answer (the connection failed or timed out)."""
    text: str
    body: dict[str, Any] | None


class RetrieveWatch:
    """Asks `url` `/retrieve` with `query`, one request after another, until stopped; keeps
    every answer, and as `problems` each that breaks the contract: not 200, or (with
    `expect_hits`) no hits or no index; with `ready`, `/ready` is asked after each and must
    answer 200 naming the serving collection."""

    def __init__(
        self,
        url: str,
        query: dict[str, Any],
        expect_hits: bool = False,
        ready: bool = False,
        pause_s: float = 0.05,
        timeout_s: float = 120,
    ) -> None:
        self.url = url
        self.query = query
        self.expect_hits = expect_hits
        self.ready = ready
        self.pause_s = pause_s
        self.timeout_s = timeout_s
        self.answers: list[Answer] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                self._ask(client)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def _ask(self, client: httpx.Client) -> None:
        try:
            answer = client.post("/retrieve", json=self.query)
        except httpx.HTTPError as error:
            self.answers.append(Answer(time.monotonic(), 0, repr(error), None))
            self.problems.append(repr(error))
            return
        try:
            body = answer.json() if answer.status_code == 200 else None
        except ValueError:
            body = None
        self.answers.append(Answer(time.monotonic(), answer.status_code, answer.text[:300], body))
        if answer.status_code != 200 or body is None:
            self.problems.append(f"/retrieve {answer.status_code}: {answer.text[:300]}")
        elif self.expect_hits and (not body["hits"] or not body["index"]):
            self.problems.append(f"/retrieve without hits: {answer.text[:300]}")
        if self.ready:
            try:
                ready = client.get("/ready")
                if ready.status_code != 200 or not ready.json().get("collection"):
                    self.problems.append(f"/ready {ready.status_code}: {ready.text[:300]}")
            except (httpx.HTTPError, ValueError) as error:
                self.problems.append(f"/ready: {error!r}")

    @property
    def statuses(self) -> list[int]:
        return [answer.status for answer in self.answers]

    def models(self) -> list[str]:
        """The embedding model of each answer that named its index."""
        return [
            a.body["index"]["embedding_model"] for a in self.answers if a.body and a.body["index"]
        ]

    def answered_since(self, moment: float) -> int:
        return sum(1 for answer in self.answers if answer.at > moment and answer.status)

    def wait_for(self, answers: int, seconds: float = 120) -> None:
        """Until `answers` more have come (or a problem did)."""
        until, deadline = len(self.answers) + answers, time.monotonic() + seconds
        while len(self.answers) < until and not self.problems:
            assert time.monotonic() < deadline, f"{self.url} answered {len(self.answers)} times"
            time.sleep(0.1)

    def stop(self) -> list[str]:
        """Stops asking; the problems seen."""
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 60)
        return self.problems
