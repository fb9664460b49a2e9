"""Application state and the dependencies route handlers declare."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from index.embedder import SentenceTransformerEmbedder
from index.reranker import CrossEncoderReranker
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
                embedder = SentenceTransformerEmbedder(
                    model_id, self.settings.embedding_device, self.settings.embedding_batch_size
                )
                embedder.warm_up()
                self.embedders[model_id] = embedder
            return self.embedders[model_id]

    searcher: IndexSearcher = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        reranker = (
            CrossEncoderReranker(
                settings.reranker_model,
                settings.embedding_device,
                max_length=settings.rerank_max_length,
                budget_ms=settings.rerank_budget_ms,
                blend_alpha=settings.rerank_blend,
            )
            if settings.reranker_model
            else None
        )
        self.searcher = IndexSearcher(
            self.store, self.embedder_for, reranker, settings.rerank_candidates
        )


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]
