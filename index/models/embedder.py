"""Dense embeddings with sentence-transformers, on the best device available."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.contracts import TORCH, InferenceBackend
from index.models.catalog import (
    canonical_model_id,
    check_available,
    local_model_stamp,
    resolve_model_path,
)
from index.models.device import device_for, pick_device
from index.models.exported_model import load_exported_model

# Prompt names models declare for each side (sentence-transformers `prompts`), in preference order.
_QUERY_PROMPT_NAMES = ("query",)
_PASSAGE_PROMPT_NAMES = ("passage", "document", "doc", "corpus")


def family_prefixes(model: str) -> tuple[str, str] | None:
    """(query, passage) prefixes of model families trained with them and not declaring them."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.startswith(("e5-", "multilingual-e5-")) and "instruct" not in name:
        return "query: ", "passage: "
    return None


def _non_empty(prompts: dict[str, str] | None) -> dict[str, str]:
    """Declared prompts (sentence-transformers fills in empty ones for the names it knows)."""
    return {str(name): str(text) for name, text in (prompts or {}).items() if text}


MAX_BATCH_COUNT = 1024
"""The most texts of one token-bounded batch (very short texts would otherwise make batches of
thousands, for no gain in speed)."""
GPU_BATCH_TOKENS = 1024 * 256
"""A data-centre GPU's batch: 1,024 full-length MiniLM sequences (bench/gpu.py measures it)."""


def token_batches(
    lengths: Sequence[int], budget: int, most: int = MAX_BATCH_COUNT
) -> list[list[int]]:
    """Indexes of `lengths` in batches, longest first, each padded to its first (longest) text
    and holding at most `budget` tokens with padding (a text longer than the budget alone)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if batch and len(batch) < most and (len(batch) + 1) * lengths[batch[0]] <= budget:
            batch.append(index)
        else:
            batches.append([index])
    return batches


class PaddingStats:
    """Tokens embedded and the tokens the batches padded them to: the padding's cost."""

    def __init__(self) -> None:
        self.real = 0
        self.padded = 0

    def add(self, lengths: Sequence[int], batches: list[list[int]]) -> None:
        self.real += sum(lengths)
        self.padded += sum(lengths[batch[0]] * len(batch) for batch in batches)

    @property
    def ratio(self) -> float:
        return self.padded / self.real if self.real else 1.0


class SentenceTransformerEmbedder:
    """Normalised dense embeddings; also the tokenizer chunking uses to respect the model limit.

    >>> embedder = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    >>> embedder.warm_up()
    >>> embedder.embed_documents(["hello world"]).shape
    (1, 384)
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 64,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_tokens: int | None = None,
        backend: InferenceBackend = TORCH,
        exports_dir: Path | None = None,
    ) -> None:
        """Prefixes left None come from the model's own `prompts`, else its family's
        convention (e5: "query: " / "passage: "), else none. `batch_tokens`: batches of
        documents bounded by their padded tokens (`token_batches`) rather than `batch_size`
        texts, so that short texts go in large batches and long ones in small. `backend`:
        the runtime of the transformer (`index.models.exports`), its exports kept in
        `exports_dir`."""
        self.model_id = canonical_model_id(model)
        self.backend = backend
        self.exports_dir = exports_dir
        self.requested_device = device
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.max_batch_count = MAX_BATCH_COUNT
        self.padding = PaddingStats()
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._model: Any = None
        self._inference = threading.Lock()
        """One call at a time into the model and its tokenizer: neither is safe to share
        between threads (an OpenVINO model's one infer request and output buffer; a fast
        tokenizer's truncation settings, which each call may change). Measured against a
        batching queue and per-thread infer requests in bench/inference_concurrency.py."""

    def warm_up(self) -> None:
        if self._model is not None:
            return
        check_available(self.model_id)
        path = resolve_model_path(self.model_id)
        device = pick_device(device_for(self.backend, self.requested_device))
        exported = load_exported_model(Path(path), self.model_id, self.backend, self.exports_dir)
        if exported is not None:  # no torch in the process (index.models.exported_model)
            self._model = exported
            return
        from sentence_transformers import SentenceTransformer

        from index.models.runtime_model import accelerate  # torch: only where a model runs

        model = SentenceTransformer(path, device=device, local_files_only=Path(path).exists())
        accelerate(model, self.backend, self.model_id, self.exports_dir)
        self._model = model
        if device.startswith("cuda"):
            # Half precision on a GPU: twice the throughput, vectors within ~1e-3 of fp32.
            self._model.half()
            if self.batch_tokens:
                self.batch_tokens = max(self.batch_tokens, GPU_BATCH_TOKENS)
                self.max_batch_count = max(self.max_batch_count, 4 * MAX_BATCH_COUNT)

    @property
    def model(self) -> Any:
        self.warm_up()
        return self._model

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dimension(self) -> int:
        model = self.model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def query_prefix(self) -> str:
        if self._query_prefix is None:
            self._query_prefix = self._declared_prefix(_QUERY_PROMPT_NAMES, 0)
        return self._query_prefix

    @property
    def passage_prefix(self) -> str:
        if self._passage_prefix is None:
            self._passage_prefix = self._declared_prefix(_PASSAGE_PROMPT_NAMES, 1)
        return self._passage_prefix

    def _declared_prefix(self, names: tuple[str, ...], side: int) -> str:
        prompts = self._declared_prompts()
        for name in names:
            if prompts.get(name):
                return prompts[name]
        family = family_prefixes(self.model_id)
        return family[side] if family else ""

    def _declared_prompts(self) -> dict[str, str]:
        """The model's `prompts`: read from its saved settings while it is not loaded, so that
        a first ingest learns its cache key without loading the model (5-20 s), and one whose
        source cannot be listed fails without it (an existing index records its prefixes);
        sentence-transformers takes them from the same file."""
        if self._model is None:
            path = Path(resolve_model_path(self.model_id))
            if path.is_dir():
                saved = path / "config_sentence_transformers.json"
                if not saved.is_file():
                    return {}
                return _non_empty(json.loads(saved.read_text(encoding="utf-8")).get("prompts"))
        return _non_empty(getattr(self.model, "prompts", None))

    @property
    def cache_key(self) -> str:
        """What an embedding depends on besides the text: the model (a local folder's files
        too), its backend (int8 vectors are not fp32 ones) and its passage prefix."""
        key = self.model_id
        if stamp := local_model_stamp(self.model_id):
            key += f"@{stamp}"
        if self.backend != TORCH:  # torch keys as before, so existing caches stay valid
            key += f"#{self.backend.label}"
        return f"{key}|{self.passage_prefix}" if self.passage_prefix else key

    @property
    def max_tokens(self) -> int:
        """The model's sequence limit less its two special tokens ([CLS] and [SEP]) and the
        passage prefix, so that a chunk of this many tokens is embedded whole."""
        prefix = self.count_tokens([self.passage_prefix])[0] if self.passage_prefix else 0
        return int(self.model.max_seq_length) - 2 - prefix

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        tokenizer = self.model.tokenizer
        with self._inference:
            encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        tokenizer = self.model.tokenizer
        with self._inference:
            encoded = tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not self.batch_tokens or len(texts) < 2:
            return self._encode(texts, self.passage_prefix)
        lengths = self.sequence_lengths(texts, self.passage_prefix)
        batches = token_batches(lengths, self.batch_tokens, self.max_batch_count)
        self.padding.add(lengths, batches)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch in batches:
            vectors[batch] = self._encode(
                [texts[i] for i in batch], self.passage_prefix, len(batch)
            )
        return vectors

    def sequence_lengths(self, texts: Sequence[str], prefix: str = "") -> list[int]:
        """Each text's tokens as the model sees them: prefix and special tokens included, cut
        at the model's limit."""
        limit = int(self.model.max_seq_length)
        extra = 2 + (self.count_tokens([prefix])[0] if prefix else 0)
        return [min(n + extra, limit) for n in self.count_tokens(texts)]

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        vector: npt.NDArray[np.float32] = self._encode([text], self.query_prefix)[0]
        return vector

    def _encode(
        self, texts: Sequence[str], prefix: str, batch_size: int | None = None
    ) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        with self._inference:
            vectors = model.encode(
                list(texts),
                prompt=prefix,
                batch_size=batch_size or self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        array: npt.NDArray[np.float32] = np.asarray(vectors, dtype=np.float32)
        return array
