"""Application state and the dependencies route handlers declare."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from composition.components import Components
from config.settings import Settings
from index.searcher import IndexSearcher
from index.types import CollectionSpec, Embedder, VectorStore


@dataclass
class ServiceState:
    """Everything the service holds between requests, built once by `create_app`."""

    settings: Settings
    store: VectorStore
    deployment: str = ""
    embedders: dict[tuple[str, str, str], Embedder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    loading: set[tuple[str, str, str]] = field(default_factory=set)
    loading_lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _key(spec: CollectionSpec) -> tuple[str, str, str]:
        return (spec.embedding_model, spec.query_prefix, spec.passage_prefix)

    def has_embedder_for(self, spec: CollectionSpec) -> bool:
        return self._key(spec) in self.embedders

    def embedder_for(self, spec: CollectionSpec) -> Embedder:
        """One loaded model per (model, prefixes): a collection answers with the model it was
        built with, so a moved alias switches models with the next request. Requests for a
        loaded model never wait for another one to load."""
        key = self._key(spec)
        if (loaded := self.embedders.get(key)) is not None:
            return loaded
        with self.lock:
            if key not in self.embedders:
                embedder = Components(self.settings).embedder_for(spec)
                embedder.warm_up()
                self.embedders[key] = embedder
            return self.embedders[key]

    def load_in_background(self, spec: CollectionSpec) -> None:
        """One loading thread per model, however often `/ready` is polled meanwhile."""
        key = self._key(spec)
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

    searcher: IndexSearcher = field(init=False)

    def __post_init__(self) -> None:
        parts = Components(self.settings)
        reranker = parts.reranker(load_in_background=True)
        self.searcher = parts.searcher(self.store, self.embedder_for, reranker)
        if reranker is not None:
            reranker.warm_up_in_background()


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def get_searcher(state: State) -> IndexSearcher:
    """The searcher a request runs on; tests swap it through `app.dependency_overrides`."""
    return state.searcher


Searcher = Annotated[IndexSearcher, Depends(get_searcher)]
