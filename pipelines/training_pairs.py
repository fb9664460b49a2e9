"""Training pairs for the bi-encoder and the cross-encoder: each judged document's best-matching
chunk as the positive, the highest-ranked chunks of unjudged documents in Sluice's own hybrid
ranking as hard negatives."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # training itself needs only torch and sentence-transformers (a GPU box)
    from index.search.searcher import IndexSearcher
    from pipelines.beir import BeirDataset


@dataclass(frozen=True)
class TrainingPair:
    query: str
    passage: str
    label: float


def write_pairs(path: Path, pairs: list[TrainingPair]) -> Path:
    """JSON Lines, a pair a line: what `--pairs` and the GPU scripts read back (`read_pairs`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dataclasses.asdict(pair)) + "\n" for pair in pairs))
    return path


def read_pairs(path: Path) -> list[TrainingPair]:
    return [TrainingPair(**json.loads(line)) for line in path.read_text().splitlines() if line]


def mine_pairs(
    dataset: BeirDataset,
    searcher: IndexSearcher,
    alias: str,
    negatives_per_query: int = 4,
    depth: int = 30,
    seed: int = 13,
) -> list[TrainingPair]:
    """Positives and hard negatives for every judged query of `dataset` (its train split)."""
    from chunking.types import stored_indexed_text
    from index.contracts import MatchAny, PayloadFilter
    from pipelines.beir import document_uri

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
                pairs.append(TrainingPair(query, stored_indexed_text(best[0].payload), 1.0))
        ranked = searcher.search(alias, query, "hybrid", limit=depth).result.hits
        seen: set[str] = set()
        negatives = []
        for hit in ranked:
            uri = str(hit.payload["uri"])
            if uri not in positives and uri not in seen:
                seen.add(uri)
                negatives.append(stored_indexed_text(hit.payload))
        hardest = negatives[: max(1, negatives_per_query // 2)]
        rest = negatives[len(hardest) :]
        chosen = hardest + rng.sample(rest, min(len(rest), negatives_per_query - len(hardest)))
        pairs.extend(TrainingPair(query, text, 0.0) for text in chosen)
    rng.shuffle(pairs)
    return pairs


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


def trainer_arguments(
    output_dir: Path, epochs: float, batch_size: int, learning_rate: float, seed: int
) -> dict[str, Any]:
    """What both trainers (sentence-transformers' bi- and cross-encoder ones) are given alike:
    a linear schedule with 10 % warm-up, no checkpoints, no reporting anywhere."""
    return {
        "output_dir": str(output_dir / "checkpoints"),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": 0.1,  # a float is a ratio of the training steps (Transformers 5)
        "seed": seed,
        "save_strategy": "no",
        "logging_steps": 10,
        "report_to": "none",
        "dataloader_num_workers": 0,
    }
