"""Ingest-side parts built from one `Settings` (index parts: `index.from_settings`)."""

from __future__ import annotations

import hashlib
import json

from chunking.document_chunker import DocumentChunker
from chunking.title_chunker import TitleChunker
from chunking.types import Chunker
from index.embedder import SentenceTransformerEmbedder
from ingest.unstructured_parser import UnstructuredParser
from sluice.settings import Settings


def build_parser(settings: Settings) -> UnstructuredParser:
    return UnstructuredParser(strategy=settings.parse_strategy)


def build_chunker(settings: Settings, embedder: SentenceTransformerEmbedder) -> Chunker:
    if settings.chunker == "document":
        return DocumentChunker(embedder)
    return TitleChunker(
        embedder,
        max_tokens=settings.chunk_max_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        context=settings.chunk_context,
    )


def config_fingerprint(settings: Settings) -> str:
    """Changes when a setting that shapes a document's chunks changes."""
    shaping = {
        "parse_strategy": settings.parse_strategy,
        "chunker": settings.chunker,
        "chunk_context": settings.chunk_context,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "embedding_model": settings.embedding_model,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
