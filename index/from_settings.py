"""Index parts built from the one `Settings`: used by the flows, the API and the CLI alike."""

from __future__ import annotations

from index.bm25 import Bm25Params
from index.embedder import SentenceTransformerEmbedder
from index.embedding_cache import EmbeddingCache
from index.fusion import FusionParams
from index.reranker import CrossEncoderReranker
from index.store_factory import open_vector_store
from index.types import CollectionSpec, VectorStore
from sluice.settings import Settings


def build_store(settings: Settings) -> VectorStore:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return open_vector_store(settings.qdrant_path, settings.qdrant_url, api_key)


def build_embedder(settings: Settings, model: str | None = None) -> SentenceTransformerEmbedder:
    """An embedder for a new collection: the model's prefixes from settings, else its own."""
    model_id = model or settings.embedding_model
    prompts = settings.embedding_prompts.get(model_id)
    return SentenceTransformerEmbedder(
        model_id,
        settings.embedding_device,
        settings.embedding_batch_size,
        query_prefix=prompts.query if prompts else None,
        passage_prefix=prompts.passage if prompts else None,
    )


def embedder_for_spec(settings: Settings, spec: CollectionSpec) -> SentenceTransformerEmbedder:
    """An embedder that makes vectors the way an existing collection's were made."""
    return SentenceTransformerEmbedder(
        spec.embedding_model,
        settings.embedding_device,
        settings.embedding_batch_size,
        query_prefix=spec.query_prefix,
        passage_prefix=spec.passage_prefix,
    )


def index_embedder(settings: Settings, store: VectorStore) -> SentenceTransformerEmbedder:
    """What writes into the configured index embed with: the model of the collection it serves
    (a re-embed changes it), or the configured model when the index is new."""
    name = store.resolve_alias(settings.index_name)
    spec = store.collection_spec(name) if name else None
    return embedder_for_spec(settings, spec) if spec else build_embedder(settings)


def build_cache(settings: Settings, embedder: SentenceTransformerEmbedder) -> EmbeddingCache:
    return EmbeddingCache(settings.embedding_cache_dir, embedder.cache_key)


def build_reranker(settings: Settings) -> CrossEncoderReranker | None:
    if not settings.reranker_model:
        return None
    return CrossEncoderReranker(
        settings.reranker_model,
        settings.embedding_device,
        max_length=settings.rerank_max_length,
        budget_ms=settings.rerank_budget_ms,
        blend_alpha=settings.rerank_blend,
    )


def bm25_params(settings: Settings) -> Bm25Params:
    return Bm25Params(
        k1=settings.bm25_k1,
        b=settings.bm25_b,
        language=settings.bm25_language,
        stopwords=settings.bm25_stopwords,
    )


def fusion_params(settings: Settings) -> FusionParams:
    return FusionParams(settings.fusion_method, settings.rrf_k, settings.fusion_weights)
