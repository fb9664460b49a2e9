"""Fine-tune the bi-encoder on a BEIR train split, with hard negatives from Sluice's own hybrid
search (`pipelines.training_pairs`).

Multiple-negatives ranking loss: each query must pick its positive chunk out of its own hard
negatives and every other passage of the batch. The result is a sentence-transformers model
directory; `sluice reembed --model DIR` takes it through the golden-set gate like any model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from index.models.catalog import resolve_model_path
from pipelines.training_pairs import TrainingPair, listwise_tuples, trainer_arguments


def train_bi_encoder(
    pairs: list[TrainingPair],
    output_dir: Path,
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
    epochs: float = 2.0,
    batch_size: int = 32,
    negatives: int = 1,
    learning_rate: float = 2e-5,
    seed: int = 13,
    device: str | None = None,
    trainable_layers: int | None = None,
) -> Path:
    """Trains from `base_model`'s weights and saves the model at `output_dir`.
    `trainable_layers`: train only the top N transformer layers (the rest, embeddings included,
    stay as they were): less to forget, and less to compute backwards on a CPU."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    path = resolve_model_path(base_model)
    model = SentenceTransformer(path, device=device, local_files_only=Path(path).exists())
    if trainable_layers is not None:
        freeze_below_top_layers(model, trainable_layers)
    columns = listwise_tuples(pairs)
    kept = ["query", "positive", *(f"negative_{i + 1}" for i in range(negatives))]
    train = Dataset.from_dict({name: columns[name] for name in kept if name in columns})
    arguments = SentenceTransformerTrainingArguments(
        **trainer_arguments(output_dir, epochs, batch_size, learning_rate, seed),
        # A passage twice in one batch would be its own query's negative elsewhere.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    loss = MultipleNegativesRankingLoss(model)
    SentenceTransformerTrainer(model=model, args=arguments, train_dataset=train, loss=loss).train()
    model.save(str(output_dir))
    return output_dir


_LAYER = re.compile(r"\.layer\.(\d+)\.")


def freeze_below_top_layers(model: Any, layers: int) -> list[str]:
    """Leaves only the parameters of the top `layers` transformer layers trainable; their names."""
    numbered = [(name, _LAYER.search(name)) for name, _ in model.named_parameters()]
    depth = 1 + max((int(m.group(1)) for _, m in numbered if m), default=-1)
    trainable = []
    for (name, match), parameter in zip(numbered, model.parameters(), strict=True):
        parameter.requires_grad = bool(match and int(match.group(1)) >= depth - layers)
        if parameter.requires_grad:
            trainable.append(name)
    return trainable
