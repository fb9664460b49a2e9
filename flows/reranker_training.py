"""Fine-tune a cross-encoder on a BEIR train split, with hard negatives from our own first stage.

No trained cross-encoder can be downloaded here, so Sluice trains one: initialised from the
packaged all-MiniLM-L6-v2 weights (a new one-logit head), on (query, chunk) pairs: each judged
document's best-matching chunk as the positive, and the highest-ranked chunks of unjudged
documents in our hybrid ranking as negatives. Two losses: `bce` scores each pair on its own
(binary cross-entropy); `listwise` makes the model pick the positive out of its query's hard
negatives plus other queries' passages in the batch (multiple-negatives ranking loss), which
learns ranking from few queries faster.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flows.beir import BeirDataset, document_uri
from index.embedder import resolve_model_path
from index.reranker import passage_text
from index.searcher import IndexSearcher
from index.types import MatchAny, PayloadFilter


@dataclass(frozen=True)
class TrainingPair:
    query: str
    passage: str
    label: float


def mine_pairs(
    dataset: BeirDataset,
    searcher: IndexSearcher,
    alias: str,
    negatives_per_query: int = 4,
    depth: int = 30,
    seed: int = 13,
) -> list[TrainingPair]:
    """Positives and hard negatives for every judged query of `dataset` (its train split)."""
    rng = random.Random(seed)
    pairs: list[TrainingPair] = []
    for query_id, query in dataset.queries.items():
        positives = {document_uri(dataset.name, d) for d, s in dataset.qrels[query_id].items() if s}
        if not positives:
            continue
        for uri in sorted(positives):
            best = searcher.search(
                alias,
                query,
                "hybrid",
                limit=1,
                payload_filter=PayloadFilter(must=[MatchAny("uri", [uri])]),
            ).result.hits
            if best:
                pairs.append(TrainingPair(query, passage_text(best[0].payload), 1.0))
        ranked = searcher.search(alias, query, "hybrid", limit=depth).result.hits
        seen: set[str] = set()
        negatives = []
        for hit in ranked:
            uri = str(hit.payload["uri"])
            if uri not in positives and uri not in seen:
                seen.add(uri)
                negatives.append(passage_text(hit.payload))
        hardest = negatives[: max(1, negatives_per_query // 2)]
        rest = negatives[len(hardest) :]
        chosen = hardest + rng.sample(rest, min(len(rest), negatives_per_query - len(hardest)))
        pairs.extend(TrainingPair(query, text, 0.0) for text in chosen)
    rng.shuffle(pairs)
    return pairs


TrainingLoss = Literal["bce", "listwise"]


def listwise_tuples(pairs: list[TrainingPair]) -> dict[str, list[str]]:
    """(query, positive, negative_1..negative_n) columns: one row per positive, with its query's
    negatives (cycled where a query has fewer than the most any query has)."""
    positives: dict[str, list[str]] = defaultdict(list)
    negatives: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        (positives if pair.label > 0 else negatives)[pair.query].append(pair.passage)
    width = max((len(n) for n in negatives.values()), default=0)
    columns: dict[str, list[str]] = {"query": [], "positive": []}
    columns.update({f"negative_{i + 1}": [] for i in range(width)})
    for query, passages in positives.items():
        own = negatives.get(query) or []
        if width and not own:
            continue
        for passage in passages:
            columns["query"].append(query)
            columns["positive"].append(passage)
            for i in range(width):
                columns[f"negative_{i + 1}"].append(own[i % len(own)])
    return columns


def train_cross_encoder(
    pairs: list[TrainingPair],
    output_dir: Path,
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
    epochs: int = 1,
    batch_size: int = 16,
    max_length: int = 256,
    learning_rate: float = 5e-5,
    seed: int = 13,
    loss_name: TrainingLoss = "bce",
) -> Path:
    """Trains and saves a normal sentence-transformers CrossEncoder directory at `output_dir`."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import (
        BinaryCrossEntropyLoss,
        MultipleNegativesRankingLoss,
    )

    path = resolve_model_path(base_model)
    model = CrossEncoder(
        path, num_labels=1, max_length=max_length, local_files_only=Path(path).exists()
    )
    loss: Any
    if loss_name == "listwise":
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
        import torch

        loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight))
    arguments = CrossEncoderTrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,  # a float is a ratio of the training steps (Transformers 5)
        seed=seed,
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        dataloader_num_workers=0,
    )
    CrossEncoderTrainer(model=model, args=arguments, train_dataset=train, loss=loss).train()
    model.save(str(output_dir))
    return output_dir
