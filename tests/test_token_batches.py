"""Token-bounded batches: every text once, longest first, no batch over its token budget; and
the vectors are the ones count-bounded batches give."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from index.models.embedder import PaddingStats, SentenceTransformerEmbedder, token_batches


@given(
    lengths=st.lists(st.integers(1, 512), max_size=300),
    budget=st.integers(1, 20_000),
    most=st.integers(1, 64),
)
def test_every_text_once_longest_first_within_the_budget(
    lengths: list[int], budget: int, most: int
) -> None:
    batches = token_batches(lengths, budget, most)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= most
        assert len(batch) == 1 or lengths[batch[0]] * len(batch) <= budget
    stats = PaddingStats()
    stats.add(lengths, batches)
    assert stats.padded >= stats.real


def test_token_batches_embed_what_count_batches_embed(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = [("word " * n).strip() for n in (3, 200, 17, 90, 5, 250, 1, 40)] * 3
    bounded = SentenceTransformerEmbedder(embedder.model_id, device="cpu", batch_tokens=600)
    bounded._model = embedder.model  # the same loaded model
    counted = embedder.embed_documents(texts)
    tokens = bounded.embed_documents(texts)
    assert tokens.shape == counted.shape
    assert np.min(np.sum(tokens * counted, axis=1)) > 0.9999
    assert bounded.padding.real > 0 and 1.0 <= bounded.padding.ratio < 1.5
