"""Build the pipeline's parts from one `Settings`: the only place flows read configuration."""

from __future__ import annotations

import hashlib
import json

from chunking.title_chunker import TitleChunker
from index.bm25 import Bm25Params
from index.embedder import SentenceTransformerEmbedder
from index.embedding_cache import EmbeddingCache
from index.fusion import FusionParams
from index.store_factory import open_vector_store
from index.types import VectorStore
from ingest.unstructured_parser import UnstructuredParser
from sluice.settings import Settings


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
    )


def build_store(settings: Settings) -> VectorStore:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return open_vector_store(settings.qdrant_path, settings.qdrant_url, api_key)


def build_cache(settings: Settings) -> EmbeddingCache:
    return EmbeddingCache(settings.embedding_cache_dir, settings.embedding_model)


def build_parser(settings: Settings) -> UnstructuredParser:
    return UnstructuredParser(strategy=settings.parse_strategy)


def build_chunker(settings: Settings, embedder: SentenceTransformerEmbedder) -> TitleChunker:
    return TitleChunker(
        embedder, max_tokens=settings.chunk_max_tokens, overlap_tokens=settings.chunk_overlap_tokens
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


def config_fingerprint(settings: Settings) -> str:
    """Changes when a setting that shapes a document's chunks changes."""
    shaping = {
        "parse_strategy": settings.parse_strategy,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "embedding_model": settings.embedding_model,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
