"""One chunk per document, for collections of short records (abstracts, tickets, products)."""

from __future__ import annotations

from chunking.ids import chunk_point_id, document_version
from chunking.types import Chunk, Tokenizer
from ingest.types import ParsedDocument


class DocumentChunker:
    """The whole document text as a single chunk.

    BM25 indexes all of it; the embedder sees only its first window (the model truncates), which
    is how published dense results on BEIR are computed. Use it for short documents, or to
    reproduce those results; long documents belong with `TitleChunker`.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def run(
        self, document: ParsedDocument, config_fingerprint: str = "", origin: str = ""
    ) -> list[Chunk]:
        texts = [element.text.strip() for element in document.elements if element.text.strip()]
        if not texts:
            return []
        text = "\n\n".join(texts)
        version = document_version(document.content_hash, config_fingerprint, origin)
        return [
            Chunk(
                chunk_id=chunk_point_id(document.source.doc_id, version, 0),
                doc_id=document.source.doc_id,
                doc_version=version,
                ordinal=0,
                text=text,
                uri=document.source.uri,
                title=document.title,
                pages=sorted({e.page_number for e in document.elements if e.page_number}),
                element_types=sorted({e.category for e in document.elements}),
                char_start=0,
                char_end=len(text),
                token_count=self.tokenizer.count_tokens([text])[0],
                filetype=document.filetype,
            )
        ]
