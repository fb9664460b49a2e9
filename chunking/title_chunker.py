"""Title-aware chunking bounded by the embedder's token limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from chunking.boundaries import pack_windows, sentence_spans, token_windows
from chunking.ids import chunk_point_id, document_version
from chunking.types import Chunk, Tokenizer
from ingest.types import ParsedDocument

_HEADING_CATEGORIES = frozenset({"Title"})
_MAX_HEADING_CHARS = 200


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int
    page: int | None
    category: str


@dataclass
class _Section:
    headings: list[str]
    units: list[_Unit] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(unit.tokens for unit in self.units)


class TitleChunker:
    """Splits a parsed document into sections at its titles, then packs each section's elements
    into chunks of at most `max_tokens` tokens with `overlap_tokens` of overlap.

    Sections smaller than `min_section_tokens` merge into the next one, so a heading is never a
    chunk on its own. Every chunk keeps its heading path, pages, element types and character
    offsets into the document text (elements joined by blank lines).

    >>> chunker = TitleChunker(tokenizer, overlap_tokens=32)
    >>> chunks = chunker.run(parsed_document, config_fingerprint="…")  # doctest: +SKIP
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_tokens: int | None = None,
        overlap_tokens: int = 32,
        min_section_tokens: int = 48,
    ) -> None:
        limit = tokenizer.max_tokens
        self.max_tokens = min(max_tokens or limit, limit)
        if overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than the chunk size")
        self.tokenizer = tokenizer
        self.overlap_tokens = overlap_tokens
        self.min_section_tokens = min_section_tokens

    def run(self, document: ParsedDocument, config_fingerprint: str = "") -> list[Chunk]:
        text, sections = self._sections(document)
        version = document_version(document.content_hash, config_fingerprint)
        chunks: list[Chunk] = []
        for section in _merge_small(sections, self.min_section_tokens, self.max_tokens):
            counts = [unit.tokens for unit in section.units]
            for first, last in pack_windows(counts, self.max_tokens, self.overlap_tokens):
                units = section.units[first:last]
                start, end = units[0].start, units[-1].end
                ordinal = len(chunks)
                chunks.append(
                    Chunk(
                        chunk_id=chunk_point_id(document.source.doc_id, version, ordinal),
                        doc_id=document.source.doc_id,
                        doc_version=version,
                        ordinal=ordinal,
                        text=text[start:end],
                        uri=document.source.uri,
                        title=document.title,
                        headings=list(section.headings),
                        pages=sorted({u.page for u in units if u.page is not None}),
                        element_types=sorted({u.category for u in units}),
                        char_start=start,
                        char_end=end,
                        token_count=sum(u.tokens for u in units),
                        filetype=document.filetype,
                    )
                )
        return chunks

    def _sections(self, document: ParsedDocument) -> tuple[str, list[_Section]]:
        parts: list[str] = []
        offset = 0
        headings: list[str] = []
        sections = [_Section(headings=[])]
        texts = [element.text.strip() for element in document.elements]
        counts = self.tokenizer.count_tokens(texts)
        for element, element_text, tokens in zip(document.elements, texts, counts, strict=True):
            start = offset
            parts.append(element_text)
            offset += len(element_text) + 2
            is_heading = (
                element.category in _HEADING_CATEGORIES and len(element_text) <= _MAX_HEADING_CHARS
            )
            if is_heading:
                depth = max(0, element.depth or 0)
                headings = [*headings[:depth], element_text]
                sections.append(_Section(headings=list(headings)))
            section = sections[-1]
            if tokens <= self.max_tokens:
                section.units.append(
                    _Unit(
                        start,
                        start + len(element_text),
                        tokens,
                        element.page_number,
                        element.category,
                    )
                )
            else:
                section.units.extend(
                    self._split(element_text, start, element.page_number, element.category)
                )
        return "\n\n".join(parts), [s for s in sections if s.units]

    def _split(self, text: str, offset: int, page: int | None, category: str) -> list[_Unit]:
        """Sentences of an oversized element; a sentence still too long is cut by tokens."""
        units: list[_Unit] = []
        spans = sentence_spans(text)
        counts = self.tokenizer.count_tokens([text[s:e] for s, e in spans])
        for (start, end), tokens in zip(spans, counts, strict=True):
            if tokens <= self.max_tokens:
                units.append(_Unit(offset + start, offset + end, tokens, page, category))
                continue
            piece = text[start:end]
            windows = token_windows(
                self.tokenizer.token_spans(piece), self.max_tokens, self.overlap_tokens
            )
            window_counts = self.tokenizer.count_tokens([piece[s:e] for s, e in windows])
            for (w_start, w_end), w_tokens in zip(windows, window_counts, strict=True):
                units.append(
                    _Unit(
                        offset + start + w_start,
                        offset + start + w_end,
                        min(w_tokens, self.max_tokens),
                        page,
                        category,
                    )
                )
        return units


def _merge_small(sections: list[_Section], min_tokens: int, max_tokens: int) -> list[_Section]:
    """Fold each section below `min_tokens` into the following one when the two fit together."""
    merged: list[_Section] = []
    pending: _Section | None = None
    for section in sections:
        if pending is not None:
            if pending.tokens + section.tokens <= max_tokens:
                section = _Section(pending.headings, pending.units + section.units)
            else:
                merged.append(pending)
            pending = None
        if section.tokens < min_tokens:
            pending = section
        else:
            merged.append(section)
    if pending is not None:
        merged.append(pending)
    return merged
