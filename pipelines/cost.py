"""What work costs: CPU and GPU seconds, tokens embedded, and an estimate from configurable
rates. Estimates, not bills: rates are the operator's (`SLUICE_COST_*`), seconds are measured.

>>> meter = CpuMeter()
>>> # ... the run ...
>>> cost = Cost.of(CostRates(), meter.seconds(), tokens_embedded=1200, chunks=9)
>>> cost.estimated_cost >= 0
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from index.contracts import Embedder, VectorStore
from index.versions import collection_name, versions_of

GIB = 1024**3


@dataclass(frozen=True)
class CostRates:
    cpu_hour: float = 0.05
    gpu_hour: float = 2.5
    storage_gb_month: float = 0.10
    currency: str = "USD"


DEFAULT_RATES = CostRates()


@dataclass
class Cost:
    tokens_embedded: int = 0
    chunks: int = 0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    estimated_cost: float = 0.0
    currency: str = "USD"

    @classmethod
    def of(
        cls,
        rates: CostRates,
        cpu_seconds: float,
        gpu_seconds: float = 0.0,
        tokens_embedded: int = 0,
        chunks: int = 0,
    ) -> Cost:
        compute = cpu_seconds / 3600 * rates.cpu_hour + gpu_seconds / 3600 * rates.gpu_hour
        return cls(
            tokens_embedded=tokens_embedded,
            chunks=chunks,
            cpu_seconds=cpu_seconds,
            gpu_seconds=gpu_seconds,
            estimated_cost=compute,
            currency=rates.currency,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Cost:
        """A report's `cost` object read back; keys it does not know are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a report: what was measured, then the estimate."""
        return (
            f"{self.tokens_embedded} tokens embedded, {self.chunks} chunks, "
            f"CPU {self.cpu_seconds:.1f} s, GPU {self.gpu_seconds:.1f} s: "
            f"estimated {self.estimated_cost:.6f} {self.currency}"
        )


def total_cost(costs: Iterable[Cost]) -> Cost:
    """The sum of several runs' costs (in the currency of the first)."""
    total = Cost()
    for n, cost in enumerate(costs):
        if n == 0:
            total.currency = cost.currency
        total.tokens_embedded += cost.tokens_embedded
        total.chunks += cost.chunks
        total.cpu_seconds += cost.cpu_seconds
        total.gpu_seconds += cost.gpu_seconds
        total.estimated_cost += cost.estimated_cost
    return total


def _cpu_now() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuMeter:
    """CPU seconds (user + system) of this process and of its child processes that ended
    since it started: parse workers count once their pool has shut down, which it does before a
    run reports. A child still running when the run ends (none of Sluice's) is not counted."""

    def __init__(self) -> None:
        self.started = _cpu_now()

    def seconds(self) -> float:
        return round(max(0.0, _cpu_now() - self.started), 3)


def on_gpu(embedder: Embedder) -> bool:
    """Whether the embedder's model runs on a CUDA device (its embed seconds are GPU seconds).
    Ask only after it embedded something: the question loads the model."""
    return str(getattr(embedder, "device", "cpu")).startswith("cuda")


def gpu_seconds(embedder: Embedder, embedded: int, embed_seconds: float) -> float:
    """The embed stage's wall seconds when the model ran on a GPU, else 0."""
    return round(embed_seconds, 3) if embedded and on_gpu(embedder) else 0.0


@dataclass
class StorageEstimate:
    """An index's storage, all its kept versions together: their shard folders on disk
    (embedded engine), or points × (dimension × 4 bytes + the mean stored payload and BM25
    vector of a sample of points) on a Qdrant server, whose disk Sluice cannot see."""

    bytes: int
    method: Literal["disk", "points"]
    versions: int
    monthly_cost: float
    currency: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SAMPLE_POINTS = 64


def estimate_storage(
    store: VectorStore, alias: str, rates: CostRates, shard_root: Path | None = None
) -> StorageEstimate:
    """What the index behind `alias` takes and costs a month. `shard_root`: the embedded
    engine's folder (one shard folder per collection under `collections/`); None for a server."""
    method: Literal["disk", "points"] = "disk" if shard_root else "points"
    size = 0
    numbers = versions_of(store, alias)
    for number in numbers:
        name = collection_name(alias, number)
        shard = shard_root / "collections" / name if shard_root else None
        if shard is not None and shard.is_dir():
            size += folder_bytes(shard)
        else:
            method = "points"
            size += _points_bytes(store, name)
    return StorageEstimate(
        size, method, len(numbers), size / GIB * rates.storage_gb_month, rates.currency
    )


def folder_bytes(folder: Path) -> int:
    """Bytes the files under `folder` take on disk, as `du` counts them: allocated blocks, not
    apparent sizes (the engine preallocates its WAL and storage pages sparsely, 32 MiB each).
    A file removed while counting counts 0."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            blocks = getattr(stat, "st_blocks", None)
            total += stat.st_size if blocks is None else blocks * 512
    return total


def _points_bytes(store: VectorStore, collection: str) -> int:
    points = store.count(collection)
    if not points:
        return 0
    spec = store.collection_spec(collection)
    dimension = spec.dimension if spec else 0
    sample = next(iter(store.read_points(collection, SAMPLE_POINTS)), [])
    per_point = sum(
        len(json.dumps(p.payload, default=str)) + 8 * len(p.sparse.indices) for p in sample
    ) / max(1, len(sample))
    return int(points * (dimension * 4 + per_point))
