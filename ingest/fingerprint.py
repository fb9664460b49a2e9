"""A document's config fingerprint: the settings that shape its chunks.

It is part of a document's identity: the change plan compares it with the manifest's, and the
document version (so every point id) includes it, so a settings change re-processes exactly the
documents it affects. The embedding model is not part of it: it belongs to the collection
version, and a model change is a re-embed of the same chunks, not a re-parse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from ingest.ocr import IMAGE_TYPES, OcrMode, ocr_available
from ingest.types import SourceItem

LAYOUT_PARSED = frozenset({"pdf", "heic", *IMAGE_TYPES})
"""File types whose parsing depends on the parse strategy (text layer, OCR, layout model)."""


@dataclass(frozen=True)
class ChunkShaping:
    """The settings that shape chunks, as the composition root reads them."""

    parse_strategy: str
    chunker: str
    chunk_context: bool
    chunk_max_tokens: int | None
    """None: the embedding model's limit."""
    chunk_overlap_tokens: int
    ocr: OcrMode

    def fingerprint(self, filetype: str = "pdf") -> str:
        """The parse strategy counts only for PDFs and images."""
        layout = filetype in LAYOUT_PARSED
        shaping: dict[str, object] = {
            "parse_strategy": self.parse_strategy if layout else None,
            "chunker": self.chunker,
            "chunk_context": self.chunk_context,
            "chunk_max_tokens": self.chunk_max_tokens,
            "chunk_overlap_tokens": self.chunk_overlap_tokens,
        }
        if layout and ocr_available(self.ocr):
            # Only where OCR runs, so that fingerprints made without it stay valid: a machine
            # that gains Tesseract re-reads its PDFs and images once (same chunks, embeddings
            # cached).
            shaping["ocr"] = "tesseract"
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]

    def of(self, item: SourceItem) -> str:
        return self.fingerprint(PurePosixPath(item.name).suffix.lower().lstrip("."))
