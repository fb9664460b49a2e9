"""Title-aware chunking bounded by the embedder's token limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from chunking.boundaries import pack_windows, sentence_spans, token_windows
from chunking.ids import chunk_point_id, document_version
from chunking.types import Chunk, Tokenizer, link_neighbours
from ingest.types import ParsedDocument

_HEADING_CATEGORIES = frozenset({"Title"})
CONTEXT_SEPARATOR = " › "
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
    """One per element, until `_fit` splits those over the section's token budget."""

    @property
    def tokens(self) -> int:
        return sum(unit.tokens for unit in self.units)


class TitleChunker:
    """Splits a parsed document into sections at its titles, then packs each section's elements
    into chunks of at most `max_tokens` tokens with `overlap_tokens` of overlap.

    Sections smaller than `min_section_tokens` merge into the next one, so a heading is never a
    chunk on its own. Every chunk keeps its heading path, pages, element types and character
    offsets into the document text (elements joined by blank lines).

    With `context` on, each chunk also gets a context line: the document title and heading path,
    less what its text already contains. It is indexed with the text (a continuation chunk
    otherwise loses its document's title terms), and its tokens, capped at a quarter of the
    limit, are reserved from the section's chunk size so the two together still fit the model.

    >>> chunker = TitleChunker(tokenizer, overlap_tokens=32)
    >>> chunks = chunker.run(parsed_document, config_fingerprint="…")  # doctest: +SKIP
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_tokens: int | None = None,
        overlap_tokens: int = 32,
        min_section_tokens: int = 48,
        context: bool = True,
    ) -> None:
        if max_tokens is not None and overlap_tokens >= max_tokens:
            raise ValueError("overlap_tokens must be smaller than the chunk size")
        self._requested_max_tokens = max_tokens
        self.tokenizer = tokenizer
        self.overlap_tokens = overlap_tokens
        self.min_section_tokens = min_section_tokens
        self.context = context

    @cached_property
    def max_tokens(self) -> int:
        """Read from the model on first use: a run with nothing to chunk never loads it."""
        limit = self.tokenizer.max_tokens
        size = min(self._requested_max_tokens or limit, limit)
        if self.overlap_tokens >= size:
            raise ValueError("overlap_tokens must be smaller than the chunk size")
        return size

    def run(
        self, document: ParsedDocument, config_fingerprint: str = "", origin: str = ""
    ) -> list[Chunk]:
        text, sections = self._sections(document)
        version = document_version(document.content_hash, config_fingerprint, origin)
        chunks: list[Chunk] = []
        for section in _merge_small(sections, self.min_section_tokens, self.max_tokens):
            context = self._context_line(document.title, section.headings)
            budget = self.max_tokens - (self.tokenizer.count_tokens([context])[0] if context else 0)
            units = [u for element in section.units for u in self._fit(element, text, budget)]
            counts = [unit.tokens for unit in units]
            overlap = min(self.overlap_tokens, budget - 1)
            for first, last in pack_windows(counts, budget, overlap):
                window = units[first:last]
                start, end = window[0].start, window[-1].end
                ordinal = len(chunks)
                chunk_text = text[start:end]
                chunks.append(
                    Chunk(
                        chunk_id=chunk_point_id(document.source.doc_id, version, ordinal),
                        doc_id=document.source.doc_id,
                        doc_version=version,
                        ordinal=ordinal,
                        text=chunk_text,
                        uri=document.source.uri,
                        title=document.title,
                        headings=list(section.headings),
                        pages=sorted({u.page for u in window if u.page is not None}),
                        element_types=sorted({u.category for u in window}),
                        char_start=start,
                        char_end=end,
                        token_count=sum(u.tokens for u in window),
                        filetype=document.filetype,
                        context=_unrepeated(context, chunk_text),
                    )
                )
        return link_neighbours(chunks)

    def _context_line(self, title: str, headings: list[str]) -> str:
        """Title and heading path, cut to a quarter of the token limit."""
        if not self.context:
            return ""
        parts = list(dict.fromkeys(p.strip() for p in [title, *headings] if p.strip()))
        line = CONTEXT_SEPARATOR.join(parts)
        spans = self.tokenizer.token_spans(line)
        cap = self.max_tokens // 4
        return line[: spans[cap - 1][1]] if len(spans) > cap else line

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
            sections[-1].units.append(
                _Unit(
                    start,
                    start + len(element_text),
                    tokens,
                    element.page_number,
                    element.category,
                )
            )
        return "\n\n".join(parts), [s for s in sections if s.units]

    def _fit(self, element: _Unit, text: str, budget: int) -> list[_Unit]:
        if element.tokens <= budget:
            return [element]
        return self._split(
            text[element.start : element.end], element.start, element.page, element.category, budget
        )

    def _split(
        self, text: str, offset: int, page: int | None, category: str, budget: int
    ) -> list[_Unit]:
        """Sentences of an oversized element; a sentence still too long is cut by tokens."""
        units: list[_Unit] = []
        spans = sentence_spans(text)
        counts = self.tokenizer.count_tokens([text[s:e] for s, e in spans])
        for (start, end), tokens in zip(spans, counts, strict=True):
            if tokens <= budget:
                units.append(_Unit(offset + start, offset + end, tokens, page, category))
                continue
            piece = text[start:end]
            windows = token_windows(
                self.tokenizer.token_spans(piece), budget, min(self.overlap_tokens, budget - 1)
            )
            window_counts = self.tokenizer.count_tokens([piece[s:e] for s, e in windows])
            for (w_start, w_end), w_tokens in zip(windows, window_counts, strict=True):
                units.append(
                    _Unit(
                        offset + start + w_start,
                        offset + start + w_end,
                        min(w_tokens, budget),
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


def _unrepeated(context: str, text: str) -> str:
    """The context line less the parts the chunk text already contains."""
    parts = [part for part in context.split(CONTEXT_SEPARATOR) if part and part not in text]
    return CONTEXT_SEPARATOR.join(parts)
