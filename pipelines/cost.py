"""What work costs: CPU and GPU seconds, tokens embedded, and an estimate from configurable
rates. Estimates, not bills: rates are the operator's (`SLUICE_COST_*`), seconds are measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CostRates:
    cpu_hour: float = 0.05
    gpu_hour: float = 2.5
    storage_gb_month: float = 0.10
    currency: str = "USD"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
