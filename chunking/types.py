"""The `Chunk` model and the tokenizer contract the chunker needs from an embedder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Tokenizer(Protocol):
    """What chunking needs to keep every chunk within the embedder's token limit."""

    @property
    def max_tokens(self) -> int:
        """Most tokens of text (special tokens excluded) the model embeds without cutting."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of `text`."""
        ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Chunk:
    """One retrievable unit of a document and everything a hit needs to show about it."""

    chunk_id: str
    doc_id: str
    doc_version: str
    ordinal: int
    text: str
    uri: str
    title: str
    headings: list[str] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    element_types: list[str] = field(default_factory=list)
    char_start: int = 0
    char_end: int = 0
    token_count: int = 0
    source: str = ""
    filetype: str = ""

    @property
    def text_hash(self) -> str:
        return text_hash(self.text)

    def payload(self) -> dict[str, object]:
        """What is stored with the point in Qdrant (and filtered on)."""
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "doc_version": self.doc_version,
            "ordinal": self.ordinal,
            "text": self.text,
            "uri": self.uri,
            "title": self.title,
            "headings": self.headings,
            "pages": self.pages,
            "element_types": self.element_types,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "token_count": self.token_count,
            "source": self.source,
            "filetype": self.filetype,
            "text_hash": self.text_hash,
        }
