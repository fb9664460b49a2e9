"""Pure functions that decide where chunks start and end."""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}")


def pack_windows(
    token_counts: Sequence[int], max_tokens: int, overlap_tokens: int
) -> list[tuple[int, int]]:
    """Greedy windows `[start, end)` over units whose token sum stays within `max_tokens`.

    Each window after the first starts with the trailing units of the previous one that fit in
    `overlap_tokens`, and always moves forward. A unit larger than `max_tokens` must be split
    before packing.
    """
    if any(count > max_tokens for count in token_counts):
        raise ValueError("a unit exceeds max_tokens; split it first")
    windows: list[tuple[int, int]] = []
    start = 0
    total = len(token_counts)
    while start < total:
        end, used = start, 0
        while end < total and used + token_counts[end] <= max_tokens:
            used += token_counts[end]
            end += 1
        windows.append((start, end))
        if end >= total:
            break
        next_start, carried = end, 0
        while next_start - 1 > start and carried + token_counts[next_start - 1] <= overlap_tokens:
            next_start -= 1
            carried += token_counts[next_start]
        # The carried units plus the next unit must fit, or the overlap is dropped.
        if carried + token_counts[end] > max_tokens:
            next_start = end
        start = next_start
    return windows


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (or paragraphs) of `text`, whitespace trimmed."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def token_windows(
    token_spans: Sequence[tuple[int, int]], max_tokens: int, overlap_tokens: int
) -> list[tuple[int, int]]:
    """Character spans of consecutive windows of at most `max_tokens` tokens."""
    if not token_spans:
        return []
    step = max(1, max_tokens - overlap_tokens)
    windows = []
    for first in range(0, len(token_spans), step):
        last = min(first + max_tokens, len(token_spans)) - 1
        windows.append((token_spans[first][0], token_spans[last][1]))
        if last == len(token_spans) - 1:
            break
    return windows
