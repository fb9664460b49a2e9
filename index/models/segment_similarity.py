"""A cross-encoder scoring head that starts where the bi-encoder left off.

A cross-encoder built from a bi-encoder's weights usually gets a new, randomly initialised
classification head on the `[CLS]` token, which all-MiniLM-L6-v2 never trained: it starts at
chance and needs many optimiser steps (hours on a laptop CPU) to learn to rank. This head instead
reads the jointly encoded pair the way the bi-encoder was trained to be read: the mean of the
query's token states against the mean of the passage's (told apart by the token type ids), as a
scaled cosine. Query and passage still attend to each other in every layer, so fine-tuning can
learn interactions a bi-encoder cannot, but it starts from a ranking that is already useful.

It has no weights of its own, so a model directory saved with it holds only the transformer and
this module's small config; `CrossEncoder(path)` loads it wherever `index` is importable.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.modules import Module


class SegmentSimilarity(Module):
    """score = scale * cos(mean(query token states), mean(passage token states))."""

    config_keys: list[str] = ["scale"]  # noqa: RUF012 (the base class declares it so)

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.scale = scale

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        states = features["token_embeddings"]
        mask = features["attention_mask"].unsqueeze(-1).to(states.dtype)
        segment = features["token_type_ids"].unsqueeze(-1).to(states.dtype)
        query, passage = mask * (1 - segment), mask * segment
        query_mean = (states * query).sum(1) / query.sum(1).clamp(min=1)
        passage_mean = (states * passage).sum(1) / passage.sum(1).clamp(min=1)
        cosine = torch.nn.functional.cosine_similarity(query_mean, passage_mean, dim=-1)
        features["scores"] = (self.scale * cosine).unsqueeze(1)
        return features

    def save(
        self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any
    ) -> None:
        self.save_config(output_path)
