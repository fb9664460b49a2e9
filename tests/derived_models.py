"""Embedding models derived from the packaged all-MiniLM-L6-v2, so re-embedding can be tested
and measured offline: a wider one (another dimension, same geometry) and a broken one."""

from __future__ import annotations

from pathlib import Path


def _packaged() -> object:
    from sentence_transformers import SentenceTransformer

    from index.models.catalog import resolve_model_path

    return SentenceTransformer(
        resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu"
    )


def widened(into: Path) -> Path:
    """768 dimensions: each 384-dimension vector written twice (scaled), so every cosine, and
    so every ranking, is the packaged model's: a model change that must pass any gate."""
    import torch
    from sentence_transformers import SentenceTransformer, models  # type: ignore[attr-defined]

    base = _packaged()
    eye = torch.eye(384)
    double = models.Dense(
        384,
        768,
        bias=False,
        activation_function=torch.nn.Identity(),
        init_weight=torch.cat([eye, eye]) / 2**0.5,
    )
    modules = [module for module in base]  # type: ignore[attr-defined]
    SentenceTransformer(modules=[*modules[:-1], double, modules[-1]], device="cpu").save(str(into))
    return into


def weakened(into: Path, seed: int = 7) -> Path:
    """Word embeddings shuffled between tokens: same shape and speed, meaningless vectors."""
    import torch

    model = _packaged()
    embeddings = model[0].auto_model.embeddings.word_embeddings.weight  # type: ignore[index]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embeddings.copy_(embeddings[torch.randperm(embeddings.shape[0], generator=generator)])
    model.save(str(into))  # type: ignore[attr-defined]
    return into
