"""The re-embed gate: a version's scores on the golden set, and whether a new one may serve."""

from __future__ import annotations

from dataclasses import dataclass

from index.contracts import CollectionSpec, Embedder, HybridOptions, VectorStore
from index.search.searcher import IndexSearcher
from pipelines.beir import BeirDataset
from pipelines.evaluation import MODES, EvalMode, evaluate_modes

Scores = dict[str, dict[str, float]]
"""Per retrieval mode, per metric."""


class GateUnavailable(ValueError):
    """No golden set to compare the versions on, and the switch was not forced."""


@dataclass(frozen=True)
class GatePolicy:
    """Which score decides, and how much worse a new version may be and still serve."""

    mode: EvalMode
    metric: str
    tolerance: float
    hybrid: HybridOptions
    """Both versions are searched with these (the defaults, not either version's tuning), so
    only the model differs."""

    def score(self, scores: Scores) -> float:
        """The score the gate compares: its metric in its mode."""
        return scores[self.mode][self.metric]


@dataclass
class GateResult:
    mode: str
    metric: str
    tolerance: float
    queries: int
    old: float
    new: float

    @property
    def passed(self) -> bool:
        return self.new >= self.old - self.tolerance


def score_version(
    policy: GatePolicy,
    dataset: BeirDataset,
    store: VectorStore,
    spec: CollectionSpec,
    embedder: Embedder,
) -> Scores:
    """A version's scores in dense mode and the gate's mode, with the `sluice eval` harness;
    `embedder` embeds queries the way the version was built."""
    searcher = IndexSearcher(store, lambda _: embedder)
    modes: list[EvalMode] = [m for m in MODES if m in ("dense", policy.mode)]
    return evaluate_modes(dataset, searcher, spec.name, modes, policy.hybrid)
