"""Values that describe how vectors are made: the BM25 vector and its parameters, the
inference runtime of a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from config.model_names import Backend, Quantization


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Bm25Params:
    k1: float = 1.2
    b: float = 0.75
    language: str = "english"
    stopwords: str = "lucene"
    avg_doc_length: float = 100.0
    neighbours: int = 0
    """Chunks on each side whose terms a chunk's vector also counts (0: the chunk alone, as
    collections made before this existed)."""
    neighbour_weight: float = 0.5
    """What one occurrence of a term in a neighbouring chunk counts for."""


BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "openvino")
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "int8")


@dataclass(frozen=True)
class InferenceBackend:
    """Which runtime runs the transformer, at which precision. int8 is dynamic quantisation:
    int8 weights, activations quantised per batch at run time, no calibration data."""

    name: Backend = "torch"
    quantization: Quantization = "none"

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown backend '{self.name}' (one of {', '.join(BACKENDS)})")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization '{self.quantization}' (none or int8)")
        if self.name == "torch" and self.quantization != "none":
            raise ValueError("int8 runs on the onnx or openvino backend, not on torch")

    @property
    def label(self) -> str:
        """How a collection records it: `torch`, `onnx`, `onnx-int8`, `openvino-int8`."""
        return self.name if self.quantization == "none" else f"{self.name}-{self.quantization}"

    @classmethod
    def from_label(cls, label: str) -> InferenceBackend:
        name, _, quantization = label.partition("-")
        return cls(cast(Backend, name), cast(Quantization, quantization or "none"))


TORCH = InferenceBackend()
