"""BM25 as sparse vectors: the document side is computed here, IDF by Qdrant at query time.

A document term's value is its saturated, length-normalised term frequency
    tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
and a query term's value is how often the query repeats it (as in Lucene, bm25s and rank-bm25:
a verbose query that says "pump" three times weighs it three times). Qdrant's IDF modifier
multiplies each matched term by
    ln(1 + (N - n + 0.5) / (n + 0.5))
so the dot product is exactly BM25 with Lucene's IDF. A chunk's own terms count once per
occurrence; with `neighbours`, the terms of the chunks next to it in its document count too, at
`neighbour_weight` (docs/retrieval-quality.md: it recovers most of what splitting a long
document into chunks costs BM25). Terms are hashed to unsigned 32-bit
indices (CRC-32): stable across processes and versions, unlike Python's `hash`.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chunking.types import Chunk
from index.contracts import Bm25Params, SparseVector

# Lucene's EnglishAnalyzer stop set, the one Pyserini's published BM25 baselines use.
LUCENE_STOPWORDS = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with
    """.split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)


def term_index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0xFFFFFFFF


def term_weights(
    term_counts: Mapping[str, float], doc_length: float, params: Bm25Params
) -> dict[str, float]:
    """The BM25 term-frequency component for each term of one document."""
    norm = params.k1 * (1 - params.b + params.b * doc_length / params.avg_doc_length)
    return {term: count * (params.k1 + 1) / (count + norm) for term, count in term_counts.items()}


class Bm25Encoder:
    """Tokenises (lowercase, stop words, Snowball stemming) and encodes BM25 sparse vectors.

    >>> encoder = Bm25Encoder(Bm25Params(avg_doc_length=50))
    >>> encoder.encode_query("Running dogs").indices == encoder.encode_query("run dog").indices
    True
    """

    def __init__(self, params: Bm25Params) -> None:
        import Stemmer

        self.params = params
        self._stemmer: Any = Stemmer.Stemmer(params.language) if params.language else None
        self._stopwords = LUCENE_STOPWORDS if params.stopwords == "lucene" else frozenset()

    def tokenize(self, text: str) -> list[str]:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stopwords]
        if self._stemmer is None:
            return words
        return list(self._stemmer.stemWords(words))

    def term_spans(self, text: str) -> list[tuple[str, int, int]]:
        """Each indexed term of `text` with its character span: what a highlight marks."""
        matches = [m for m in _TOKEN.finditer(text) if m.group().lower() not in self._stopwords]
        words = [m.group().lower() for m in matches]
        terms = list(self._stemmer.stemWords(words)) if self._stemmer is not None else words
        return [(term, m.start(), m.end()) for term, m in zip(terms, matches, strict=True)]

    def encode_document(self, text: str) -> SparseVector:
        tokens = self.tokenize(text)
        weights = term_weights(Counter(tokens), len(tokens), self.params)
        return _to_sparse(weights)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self.encode_document(text) for text in texts]

    def chunk_term_counts(
        self, chunk: Chunk, tokenize: Callable[[str], list[str]] | None = None
    ) -> dict[str, float]:
        """The chunk's terms, and its `neighbours` on each side's at `neighbour_weight`.
        `tokenize`: a memoised tokenizer, when the neighbours are also chunks of the batch."""
        tokens = tokenize or self.tokenize
        counts: dict[str, float] = dict(Counter(tokens(chunk.indexed_text)))
        reach = self.params.neighbours
        for text in (*chunk.text_before[:reach], *chunk.text_after[:reach]):
            for term in tokens(text):
                counts[term] = counts.get(term, 0.0) + self.params.neighbour_weight
        return counts

    def batch_tokenizer(self) -> Callable[[str], list[str]]:
        """A tokenizer that remembers: a chunk's text is also up to four neighbours' context,
        and is tokenised (and stemmed) once per batch, not five times."""
        return functools.lru_cache(maxsize=4096)(self.tokenize)

    def encode_chunks(self, chunks: Sequence[Chunk]) -> list[SparseVector]:
        """Each chunk's vector, its length being its weighted term count."""
        tokenize = self.batch_tokenizer()
        vectors = []
        for chunk in chunks:
            counts = self.chunk_term_counts(chunk, tokenize)
            vectors.append(_to_sparse(term_weights(counts, sum(counts.values()), self.params)))
        return vectors

    def encode_query(self, text: str) -> SparseVector:
        return _to_sparse({term: float(n) for term, n in Counter(self.tokenize(text)).items()})


def average_length(encoder: Bm25Encoder, chunks: Sequence[Chunk]) -> float:
    """Mean weighted term count, the `avg_doc_length` a new collection is created with."""
    if not chunks:
        return 100.0
    tokenize = encoder.batch_tokenizer()
    total = sum(sum(encoder.chunk_term_counts(c, tokenize).values()) for c in chunks)
    return max(1.0, total / len(chunks))


def _to_sparse(weights: dict[str, float]) -> SparseVector:
    merged: dict[int, float] = {}
    for term, weight in weights.items():
        index = term_index(term)
        merged[index] = merged.get(index, 0.0) + weight
    indices = sorted(merged)
    return SparseVector(indices=indices, values=[merged[i] for i in indices])
