"""Fine-tune a cross-encoder on a BEIR train split, with hard negatives from our own first stage.

No trained cross-encoder can be downloaded here, so Sluice trains one from the packaged
all-MiniLM-L6-v2 weights, on (query, chunk) pairs: each judged document's best-matching chunk as
the positive, and the highest-ranked chunks of unjudged documents in our hybrid ranking as
negatives.

Two heads. `segment` (the default) scores the jointly encoded pair as the cosine of the query's
and the passage's mean token states (`index.models.segment_similarity`), so training starts from a
ranking that already works; `classifier` is the usual new one-logit layer on `[CLS]`, which starts
at chance and, on two CPU cores, does not get past it in an hour (docs/retrieval-quality.md).
Two losses: `listwise` makes the model pick the positive out of its query's hard negatives plus
one other query's passage (multiple-negatives ranking loss); `bce` scores each pair on its own
and needs the classifier head, whose bias it can learn.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, cast

from index.models.catalog import resolve_model_path
from pipelines.training_pairs import TrainingPair, listwise_tuples, trainer_arguments

TrainingLoss = Literal["bce", "listwise"]
RerankerHead = Literal["segment", "classifier"]


def check_recipe(loss_name: str, head: str) -> tuple[TrainingLoss, RerankerHead]:
    """The names as their types, or ValueError for an unknown name or a pair that cannot train."""
    if loss_name not in ("listwise", "bce") or head not in ("segment", "classifier"):
        raise ValueError("the loss is listwise or bce, the head segment or classifier")
    if head == "segment" and loss_name != "listwise":
        raise ValueError("the segment head trains with the listwise loss (it has no bias to fit)")
    return cast(TrainingLoss, loss_name), cast(RerankerHead, head)


POSITIVE_LABEL = 10.0
LABELLED_EPOCHS = 1.5
FEEDBACK_EPOCHS = 3.0
"""A few hundred users' queries learn more from more passes: SciFact, 1,000 simulated feedback
events, nDCG@10 at blend 0.3: 0.7446 after 1.5 epochs, 0.7546 after 3, 0.7490 after 5."""


def query_lists(pairs: list[TrainingPair]) -> dict[str, list[Any]]:
    """(query, passages, labels) columns: one row per query with a positive and a negative."""
    lists: dict[str, list[TrainingPair]] = defaultdict(list)
    for pair in pairs:
        lists[pair.query].append(pair)
    columns: dict[str, list[Any]] = {"query": [], "docs": [], "labels": []}
    for query, members in lists.items():
        labels = {m.label > 0 for m in members}
        if labels != {True, False}:
            continue
        columns["query"].append(query)
        columns["docs"].append([m.passage for m in members])
        columns["labels"].append([POSITIVE_LABEL if m.label > 0 else 0.0 for m in members])
    return columns


def train_cross_encoder(
    pairs: list[TrainingPair],
    output_dir: Path,
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
    epochs: float = LABELLED_EPOCHS,
    batch_size: int = 4,
    max_length: int = 128,
    learning_rate: float = 5e-5,
    seed: int = 13,
    loss_name: TrainingLoss = "listwise",
    head: RerankerHead = "segment",
) -> Path:
    """Trains and saves a sentence-transformers CrossEncoder directory at `output_dir`."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import (
        BinaryCrossEntropyLoss,
        ListNetLoss,
        MultipleNegativesRankingLoss,
    )

    check_recipe(loss_name, head)
    model = new_cross_encoder(base_model, max_length, head)
    loss: Any
    if loss_name == "listwise" and head == "segment":
        # ListNet's target is the softmax of the labels: positives at POSITIVE_LABEL against
        # negatives at 0 make it (nearly) one-hot, i.e. the positive's softmax cross-entropy over
        # its query's list. All of a batch's pairs go through the model in one call.
        train = Dataset.from_dict(query_lists(pairs))
        loss = ListNetLoss(model, mini_batch_size=-1)  # -1: every pair in one call
    elif loss_name == "listwise":
        train = Dataset.from_dict(listwise_tuples(pairs))
        loss = MultipleNegativesRankingLoss(model, num_negatives=min(4, batch_size - 1))
    else:
        train = Dataset.from_dict(
            {
                "query": [p.query for p in pairs],
                "passage": [p.passage for p in pairs],
                "label": [p.label for p in pairs],
            }
        )
        positives = sum(p.label for p in pairs)
        pos_weight = (len(pairs) - positives) / max(1.0, positives)
        loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight))
    arguments = CrossEncoderTrainingArguments(
        **trainer_arguments(output_dir, epochs, batch_size, learning_rate, seed)
    )
    CrossEncoderTrainer(model=model, args=arguments, train_dataset=train, loss=loss).train()
    model.save(str(output_dir))
    return output_dir


def new_cross_encoder(base_model: str, max_length: int, head: RerankerHead) -> Any:
    """An untrained CrossEncoder on `base_model`'s weights with the given scoring head."""
    import torch
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.cross_encoder import CrossEncoder

    from index.models.segment_similarity import SegmentSimilarity

    path = resolve_model_path(base_model)
    local = Path(path).exists()
    if head == "classifier":
        return CrossEncoder(path, num_labels=1, max_length=max_length, local_files_only=local)
    transformer = Transformer(
        path,
        transformer_task="feature-extraction",
        max_seq_length=max_length,
        config_kwargs={"num_labels": 1, "local_files_only": local},
        model_kwargs={"local_files_only": local},
        processor_kwargs={"local_files_only": local},
    )
    # Identity: a sigmoid would squash cosines x 20 into ties at 1.0 in float32.
    return CrossEncoder(
        modules=[transformer, SegmentSimilarity()], activation_fn=torch.nn.Identity()
    )
