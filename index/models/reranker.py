"""Cross-encoder reranking of the fused candidates, within a latency budget."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chunking.types import stored_indexed_text
from index.contracts import TORCH, InferenceBackend, RerankedPoint, RerankSkipped, ScoredPoint
from index.fusion import blend_scores
from index.models.catalog import resolve_model_path
from index.models.device import device_for, pick_device

# Module classes of our own that a saved cross-encoder may name in its modules.json. Loading a
# class from outside sentence-transformers needs `trust_remote_code`, which we grant only when
# every such class is one of these, never to code that ships with a model. The first name is
# the one rerankers trained before `index/` was split by job carry.
OWN_MODULES = frozenset(
    {
        "index.segment_similarity.SegmentSimilarity",
        "index.models.segment_similarity.SegmentSimilarity",
    }
)


def uses_only_known_modules(model_dir: Path) -> bool:
    """Whether the model's modules.json names only sentence-transformers and Sluice classes."""
    listing = model_dir / "modules.json"
    if not listing.is_file():
        return False
    types = {str(module.get("type", "")) for module in json.loads(listing.read_text())}
    custom = {t for t in types if not t.startswith("sentence_transformers.")}
    return bool(custom) and custom <= OWN_MODULES


def load_cross_encoder(
    model: str,
    device: str = "auto",
    max_length: int | None = None,
    backend: InferenceBackend = TORCH,
    exports_dir: Path | None = None,
) -> Any:
    """A sentence-transformers `CrossEncoder` from a model id or a local directory, its
    transformer run by `backend` (exports kept in `exports_dir`)."""
    from sentence_transformers import CrossEncoder

    from index.models.runtime_model import accelerate  # torch: only where a model runs

    path = resolve_model_path(model)
    local = Path(path).exists()
    encoder = CrossEncoder(
        path,
        device=pick_device(device_for(backend, device)),
        max_length=max_length,
        local_files_only=local,
        trust_remote_code=local and uses_only_known_modules(Path(path)),
    )
    accelerate(encoder, backend, model, exports_dir)
    return encoder


class CrossEncoderReranker:
    """Scores (query, chunk text) pairs with a sentence-transformers `CrossEncoder`.

    Before scoring, the expected time (pairs x the measured seconds per pair) is checked against
    `budget_ms`; between batches the elapsed time is checked again. Either way, an over-budget
    rerank raises `RerankSkipped` and the caller keeps the fused ranking.

    >>> reranker = CrossEncoderReranker("models/scifact-reranker", budget_ms=800)
    >>> reranked = reranker.rerank("query", candidates)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        budget_ms: float = 1000.0,
        blend_alpha: float = 1.0,
        load_in_background: bool = False,
        backend: InferenceBackend = TORCH,
        exports_dir: Path | None = None,
    ) -> None:
        """`load_in_background`: a rerank asked for before the model is loaded starts loading
        it and is skipped (`rerank_loading`) instead of waiting, outside its budget, for the
        load (a service); by default the first rerank loads it (evaluation, training).
        `backend`: the runtime of its transformer, exported into `exports_dir`."""
        self.model_id = model
        self.backend = backend
        self.exports_dir = exports_dir
        self.load_in_background = load_in_background
        self._loading = threading.Lock()
        self._inference = threading.Lock()
        """One `predict` at a time: the model and its tokenizer are not safe to share between
        threads (see `SentenceTransformerEmbedder`); waiting for it counts in the budget."""
        self._load_error: str | None = None
        self.requested_device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.budget_ms = budget_ms
        self.blend_alpha = blend_alpha
        self._model: Any = None
        self._seconds_per_pair: float | None = None

    def warm_up(self) -> None:
        with self._loading:  # one load, however many requests ask at once
            if self._model is not None:
                return
            model = load_cross_encoder(
                self.model_id,
                self.requested_device,
                self.max_length,
                self.backend,
                self.exports_dir,
            )
            with self._inference:
                model.predict([("warm", "up")], show_progress_bar=False)
            self._model = model

    def warm_up_in_background(self) -> None:
        def load() -> None:
            try:
                self.warm_up()
            except Exception as error:  # reported by every rerank that asks for it
                self._load_error = f"{type(error).__name__}: {error}"

        if self._model is None and not self._loading.locked():
            threading.Thread(target=load, name="reranker-loader", daemon=True).start()

    def is_loading(self) -> bool:
        return self.load_in_background and self._model is None and self._load_error is None

    def rerank(
        self, query: str, candidates: Sequence[ScoredPoint], blend: float | None = None
    ) -> list[RerankedPoint]:
        if not candidates:
            return []
        if self.load_in_background and self._model is None:
            if self._load_error:
                raise RerankSkipped(f"reranker unavailable: {self._load_error}")
            self.warm_up_in_background()
            raise RerankSkipped("rerank_loading: the reranker model is still loading")
        try:
            self.warm_up()
        except Exception as error:
            raise RerankSkipped(f"reranker unavailable: {type(error).__name__}: {error}") from error
        expected_ms = 1000 * len(candidates) * (self._seconds_per_pair or 0.0)
        if expected_ms > self.budget_ms:
            # Decay the estimate so one slow call (a cold start, a busy CPU) does not turn
            # reranking off for good: after a few skips it is measured again.
            self._seconds_per_pair = 0.8 * (self._seconds_per_pair or 0.0)
            raise RerankSkipped(
                f"rerank_budget: {len(candidates)} candidates would take ~{expected_ms:.0f} ms, "
                f"over the {self.budget_ms:.0f} ms budget"
            )
        started = time.perf_counter()
        computing = 0.0  # the model's own time, without waiting for other requests' turns
        scores: list[float] = []
        for first in range(0, len(candidates), self.batch_size):
            batch = candidates[first : first + self.batch_size]
            pairs = [(query, stored_indexed_text(p.payload)) for p in batch]
            try:
                with self._inference:
                    turn = time.perf_counter()
                    predicted = self._model.predict(
                        pairs, batch_size=self.batch_size, show_progress_bar=False
                    )
                    computing += time.perf_counter() - turn
                scores.extend(float(s) for s in predicted)  # one score a pair, or it failed
            except Exception as error:
                raise RerankSkipped(f"reranker failed: {type(error).__name__}: {error}") from error
            if 1000 * (time.perf_counter() - started) > self.budget_ms and len(scores) < len(
                candidates
            ):
                raise RerankSkipped(f"rerank_budget: exceeded {self.budget_ms:.0f} ms mid-way")
        per_pair = computing / len(candidates)
        self._seconds_per_pair = (
            per_pair
            if self._seconds_per_pair is None
            else 0.7 * self._seconds_per_pair + 0.3 * per_pair
        )
        alpha = self.blend_alpha if blend is None else blend
        final = blend_scores(scores, [p.score for p in candidates], alpha)
        ranked = sorted(zip(candidates, scores, final, strict=True), key=lambda t: (-t[2], t[0].id))
        return [RerankedPoint(point, score, value) for point, score, value in ranked]
