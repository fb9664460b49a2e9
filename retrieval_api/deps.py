"""Application state and the dependencies route handlers declare."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from composition.components import Components
from config.settings import Settings
from index.contracts import CollectionSpec, Embedder, StoreError, VectorStore
from index.feedback import FeedbackEvents
from index.query_log import QueryLog
from index.search.searcher import IndexSearcher, SearchOutcome
from index.versions import active_spec
from pipelines.cost import CostRates
from retrieval_api.cpu_ledger import CpuLedger
from retrieval_api.cursor import CursorCodec, cursor_key
from sluice_client.request import MAX_CANDIDATE_POOL


@dataclass
class ServiceState:
    """Everything the service holds between requests, built once by `create_app`."""

    settings: Settings
    store: VectorStore
    deployment: str = ""
    embedders: dict[tuple[str, ...], Embedder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    loading: set[tuple[str, ...]] = field(default_factory=set)
    loading_lock: threading.Lock = field(default_factory=threading.Lock)

    def has_embedder_for(self, spec: CollectionSpec) -> bool:
        return spec.embedder_key in self.embedders

    def embedder_for(self, spec: CollectionSpec) -> Embedder:
        """One loaded model per (model, prefixes): a collection answers with the model it was
        built with, so a moved alias switches models with the next request. Requests for a
        loaded model never wait for another one to load."""
        key = spec.embedder_key
        if (loaded := self.embedders.get(key)) is not None:
            return loaded
        with self.lock:
            if key not in self.embedders:
                embedder = Components(self.settings).embedder_for(spec)
                embedder.warm_up()
                self.embedders[key] = embedder
                self._release_unserved(keep=key)
            return self.embedders[key]

    def _release_unserved(self, keep: tuple[str, ...]) -> None:
        """After a re-embed moved the alias, the old version's model is dropped when the new
        one loads (a request still using it keeps it until it answers); one served model
        stays loaded, not one per version ever served."""
        try:
            served = active_spec(self.store, self.settings.index_name)
        except StoreError:
            return  # the index does not answer now: keep what is loaded
        wanted = {keep, served.embedder_key} if served else {keep}
        for key in [k for k in self.embedders if k not in wanted]:
            del self.embedders[key]

    def load_in_background(self, spec: CollectionSpec) -> None:
        """One loading thread per model, however often `/ready` is polled meanwhile."""
        key = spec.embedder_key
        with self.loading_lock:  # not `lock`, which a loading model holds
            if key in self.loading or key in self.embedders:
                return
            self.loading.add(key)

        def load() -> None:
            try:
                self.embedder_for(spec)
            finally:
                self.loading.discard(key)

        threading.Thread(target=load, name="model-loader", daemon=True).start()

    def query_tokens(self, outcome: SearchOutcome | None, query: str) -> int | None:
        """The query's tokens for the collection's model, where that model is loaded."""
        if outcome is None or not self.has_embedder_for(outcome.spec):
            return None
        return self.embedder_for(outcome.spec).count_tokens([query])[0]

    searcher: IndexSearcher = field(init=False)
    query_log: QueryLog | None = field(init=False)
    feedback: tuple[QueryLog, FeedbackEvents] | None = field(init=False)
    cost_rates: CostRates = field(init=False)
    cpu: CpuLedger = field(default_factory=CpuLedger)
    cursors: CursorCodec = field(init=False)

    def __post_init__(self) -> None:
        self.cursors = CursorCodec(cursor_key(self.settings), MAX_CANDIDATE_POOL)
        parts = Components(self.settings)
        reranker = parts.reranker(load_in_background=True)
        self.searcher = parts.searcher(self.store, self.embedder_for, reranker, cached=True)
        if reranker is not None:
            reranker.warm_up_in_background()
        self.query_log = parts.query_log()
        self.feedback = parts.feedback_log()
        self.cost_rates = parts.cost_rates()

    def close(self) -> None:
        if self.query_log is not None:
            self.query_log.close()
        if self.feedback is not None:
            self.feedback[0].close()
            self.feedback[1].close()


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def get_searcher(state: State) -> IndexSearcher:
    """The searcher a request runs on; tests swap it through `app.dependency_overrides`."""
    return state.searcher


Searcher = Annotated[IndexSearcher, Depends(get_searcher)]
