"""Training pairs survive the file that `--pairs` and the GPU scripts read back, whatever the
text: quotes, newlines, line and paragraph separators, any Unicode."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pipelines.training_pairs import TrainingPair, read_pairs, write_pairs

pairs = st.lists(
    st.builds(
        TrainingPair,
        query=st.text(),
        passage=st.text(),
        label=st.floats(min_value=0, max_value=1),
    ),
    max_size=8,
)


@given(pairs)
def test_pairs_written_are_the_pairs_read(written: list[TrainingPair]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_pairs(Path(folder) / "deeper" / "pairs.jsonl", written)
        assert read_pairs(path) == written
