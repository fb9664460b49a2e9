"""The `Chunk` model and the tokenizer contract the chunker needs from an embedder."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from config.sources import DEFAULT_TENANT
from ingest.types import public_uri

if TYPE_CHECKING:
    from ingest.types import ParsedDocument


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


class Chunker(Protocol):
    """Turns a parsed document into chunks; `config_fingerprint` and `origin` (the document's
    source and tenant, `chunking.ids.document_origin`) enter the chunks' version."""

    def run(
        self, document: ParsedDocument, config_fingerprint: str = "", origin: str = ""
    ) -> list[Chunk]: ...


MAX_NEIGHBOURS = 2


def link_neighbours(chunks: list[Chunk]) -> list[Chunk]:
    """Gives each of one document's chunks, in order, the text of its neighbours."""
    texts = [c.indexed_text for c in chunks]
    for i, chunk in enumerate(chunks):
        chunk.text_before = texts[max(0, i - MAX_NEIGHBOURS) : i][::-1]
        chunk.text_after = texts[i + 1 : i + 1 + MAX_NEIGHBOURS]
    return chunks


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def indexed_text(context: str, text: str) -> str:
    """What retrieval sees of a chunk: its context line (title, headings), then its text."""
    return f"{context}\n\n{text}" if context else text


def stored_indexed_text(payload: Mapping[str, object]) -> str:
    """A stored chunk's indexed text, rebuilt from its payload (what a reranker judges)."""
    return indexed_text(str(payload.get("context") or ""), str(payload.get("text") or ""))


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
    tenant: str = DEFAULT_TENANT
    path: str = ""
    """The document's path within its source (relative path, key, URL path)."""
    filetype: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    """The source's fields of its document (a database row's metadata columns)."""
    context: str = ""
    """Title and headings the text itself does not repeat, so a continuation chunk keeps its
    document's terms; embedded and BM25-indexed with the text, not shown as part of it."""
    text_before: list[str] = field(default_factory=list)
    """Indexed text of the chunks just before this one in its document, nearest first (up to
    `MAX_NEIGHBOURS`): BM25 counts their terms at a lower weight, so a passage is also found by
    what its document says around it. Neither embedded nor stored."""
    text_after: list[str] = field(default_factory=list)
    """The same for the chunks just after it."""

    @property
    def indexed_text(self) -> str:
        return indexed_text(self.context, self.text)

    @property
    def text_hash(self) -> str:
        """Hash of what is embedded, the embedding cache's key."""
        return text_hash(self.indexed_text)

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
            "tenant": self.tenant,
            "path": self.path,
            "public_uri": public_uri(self.uri, self.source, self.path),
            "filetype": self.filetype,
            "metadata": self.metadata,
            "context": self.context,
            "text_hash": self.text_hash,
        }
