"""`sluice train-embedder`: contrastive fine-tuning of the bi-encoder on mined pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.models.embedder import SentenceTransformerEmbedder
from pipelines.embedder_training import train_bi_encoder
from pipelines.training_pairs import TrainingPair

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Each query with its positive and a hard negative that shares its words but not its meaning.
ROWS = [
    ("how do plants make food", "Leaves turn sunlight into sugar.", "Food plants grow in rows."),
    ("why is the sky blue", "Air scatters short wavelengths most.", "Blue paint covers the sky."),
    ("what stops a car", "Brake pads press on the discs.", "A car stops at the red light."),
    ("how do birds fly", "Wings push air down and lift the body.", "Birds fly south for winter."),
    ("what makes bread rise", "Yeast releases gas in the dough.", "Bread rises in price."),
    ("why do we sleep", "The brain clears waste during rest.", "We sleep in beds at night."),
]


def _margins(embedder: SentenceTransformerEmbedder) -> np.ndarray:
    queries = np.stack([embedder.embed_query(q) for q, _, _ in ROWS])
    positives = embedder.embed_documents([p for _, p, _ in ROWS])
    negatives = embedder.embed_documents([n for _, _, n in ROWS])
    margins: np.ndarray = np.sum(queries * positives, axis=1) - np.sum(queries * negatives, axis=1)
    return margins


def test_training_pulls_each_query_towards_its_positive(tmp_path: Path) -> None:
    pairs = [TrainingPair(q, p, 1.0) for q, p, _ in ROWS] + [
        TrainingPair(q, n, 0.0) for q, _, n in ROWS
    ]
    before = _margins(SentenceTransformerEmbedder(MINILM, device="cpu"))
    saved = train_bi_encoder(
        pairs, tmp_path / "model", MINILM, epochs=4, batch_size=6, learning_rate=1e-4, device="cpu"
    )
    trained = SentenceTransformerEmbedder(str(saved), device="cpu")
    assert trained.dimension == 384
    after = _margins(trained)
    assert after.mean() > before.mean() + 0.05
    assert (after > before).sum() >= 5


def test_cli_train_embedder_needs_a_train_split(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app

    runner = CliRunner()
    assert "hard negatives" in runner.invoke(app, ["train-embedder", "--help"]).stdout
    (tmp_path / "qrels").mkdir()
    failed = runner.invoke(app, ["train-embedder", str(tmp_path)])
    assert failed.exit_code == 2 and "train.tsv" in failed.output and "missing" in failed.output


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
