"""Ingest-side parts built from one `Settings` (index parts: `index.from_settings`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import PurePosixPath

from chunking.document_chunker import DocumentChunker
from chunking.title_chunker import TitleChunker
from chunking.types import Chunker
from index.embedder import SentenceTransformerEmbedder
from ingest.types import SourceItem
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


_LAYOUT_PARSED = frozenset({"pdf", "png", "jpg", "jpeg", "tif", "tiff", "bmp", "heic"})
"""File types whose parsing depends on the parse strategy (text layer, OCR, layout model)."""


def config_fingerprint(settings: Settings, filetype: str = "pdf") -> str:
    """Changes when a setting that shapes this file type's chunks changes, so a settings change
    re-processes exactly the documents it affects (the parse strategy only PDFs and images).

    The embedding model is not part of it: it belongs to the collection version, and a model
    change is a re-embed of the same chunks (`flows/reembed_flow.py`), not a re-parse."""
    shaping = {
        "parse_strategy": settings.parse_strategy if filetype in _LAYOUT_PARSED else None,
        "chunker": settings.chunker,
        "chunk_context": settings.chunk_context,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint_for(settings: Settings) -> Callable[[SourceItem], str]:
    def fingerprint(item: SourceItem) -> str:
        return config_fingerprint(settings, PurePosixPath(item.name).suffix.lower().lstrip("."))

    return fingerprint
