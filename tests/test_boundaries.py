from __future__ import annotations

import pytest

from chunking.boundaries import pack_windows, sentence_spans, token_windows


def test_pack_windows_respects_the_limit_and_covers_every_unit() -> None:
    counts = [30, 50, 20, 70, 10, 40, 90]
    windows = pack_windows(counts, max_tokens=100, overlap_tokens=0)
    assert all(sum(counts[a:b]) <= 100 for a, b in windows)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    assert [b for _, b in windows[:-1]] == [a for a, _ in windows[1:]]


def test_pack_windows_carries_trailing_units_as_overlap() -> None:
    counts = [40, 40, 10, 40, 40]
    windows = pack_windows(counts, max_tokens=100, overlap_tokens=20)
    assert windows[0] == (0, 3)
    assert windows[1][0] == 2, "the 10-token unit is repeated at the start of the next chunk"
    assert all(sum(counts[a:b]) <= 100 for a, b in windows)


def test_pack_windows_always_moves_forward_with_large_overlap() -> None:
    counts = [60, 60, 60, 60]
    windows = pack_windows(counts, max_tokens=100, overlap_tokens=90)
    assert [a for a, _ in windows] == sorted({a for a, _ in windows})
    assert windows[-1][1] == 4


def test_pack_windows_rejects_an_oversized_unit() -> None:
    with pytest.raises(ValueError, match="split it first"):
        pack_windows([10, 200], max_tokens=100, overlap_tokens=0)


def test_sentence_spans_split_at_sentence_ends_and_blank_lines() -> None:
    text = "First one. Second one!  Third?\n\nFourth"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "First one.",
        "Second one!",
        "Third?",
        "Fourth",
    ]


def test_token_windows_overlap_by_the_requested_tokens() -> None:
    spans = [(i * 2, i * 2 + 1) for i in range(10)]
    windows = token_windows(spans, max_tokens=4, overlap_tokens=1)
    assert windows[0] == (0, 7)
    assert windows[1][0] == 6, "window 2 starts on the last token of window 1"
    assert windows[-1][1] == 19
