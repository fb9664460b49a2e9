"""Application state and the dependencies route handlers declare."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from index.embedder import SentenceTransformerEmbedder
from index.from_settings import build_embedder, build_reranker
from index.searcher import IndexSearcher
from index.types import VectorStore
from sluice.settings import Settings


@dataclass
class ServiceState:
    """Everything the service holds between requests, built once by `create_app`."""

    settings: Settings
    store: VectorStore
    embedders: dict[str, SentenceTransformerEmbedder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def embedder_for(self, model_id: str) -> SentenceTransformerEmbedder:
        """One loaded model per id: an index answers with the model it was built with."""
        with self.lock:
            if model_id not in self.embedders:
                embedder = build_embedder(self.settings, model_id)
                embedder.warm_up()
                self.embedders[model_id] = embedder
            return self.embedders[model_id]

    searcher: IndexSearcher = field(init=False)

    def __post_init__(self) -> None:
        self.searcher = IndexSearcher(
            self.store,
            self.embedder_for,
            build_reranker(self.settings),
            self.settings.rerank_candidates,
        )


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]
