"""A sentence-transformers bi-encoder run from its export alone: `tokenizers` for the text,
OpenVINO or ONNX Runtime for the transformer, numpy for pooling. No torch, transformers or
sentence-transformers enters the process.

Loading a model through sentence-transformers costs a process 13.9 s of CPU and 648 MB before
its first vectors, only to swap the torch transformer for the export; this way 1.3 s and 140 MB
(bench/model_load_paths.py). Every `sluice` process that embeds pays it: the API, each ingest,
each scheduled run. It applies where the model is a plain one that this module reads whole (a
Transformer, mean or CLS pooling, an optional Normalize, a `tokenizer.json`) and its export is
already made; anything else (a Dense layer, another pooling, a GPU, a model not exported yet)
loads through sentence-transformers, which also makes the export. Both paths run the same
exported model on the same batches, so their vectors agree to float rounding (tests compare
them on every backend).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from index.contracts import TORCH, InferenceBackend
from index.models.exports import export_id, export_runner, file_name

PLAIN_MODULES = ("Transformer", "Pooling", "Normalize")
"""The sentence-transformers modules this path reproduces, in the order a plain model lists."""
_FLAG_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_POOLING_KEYS = {
    "word_embedding_dimension",
    "embedding_dimension",
    "pooling_mode",
    "include_prompt",
}
_PLAIN_TRANSFORMER: dict[str, Any] = {
    "do_lower_case": False,
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}
"""Transformer settings this path reproduces (absent, or of these values); with
`max_seq_length`, the only ones it accepts."""


def _json(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def plain_layout(folder: Path) -> tuple[int, str, bool] | None:
    """(sequence limit, pooling mode, normalise) where the folder holds a plain model
    whose every setting this module honours; None otherwise."""
    listing = folder / "modules.json"
    if not (listing.is_file() and (folder / "tokenizer.json").is_file()):
        return None
    modules = _json_list(listing)
    names = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if any(not str(m.get("type", "")).startswith("sentence_transformers.") for m in modules):
        return None
    if names not in (list(PLAIN_MODULES[:2]), list(PLAIN_MODULES)):
        return None
    if modules[0].get("path", "") != "":  # the transformer's files beside modules.json
        return None
    transformer_file = folder / "sentence_bert_config.json"
    pooling_file = folder / str(modules[1].get("path", "")) / "config.json"
    if not (transformer_file.is_file() and pooling_file.is_file()):
        return None
    transformer, pooling = _json(transformer_file), _json(pooling_file)
    if any(transformer.get(key, value) != value for key, value in _PLAIN_TRANSFORMER.items()):
        return None
    if set(transformer) - {*_PLAIN_TRANSFORMER, "max_seq_length"}:
        return None
    limit = transformer.get("max_seq_length") or _tokenizer_limit(folder)
    mode = _pooling_mode(pooling)
    if mode is None or not isinstance(limit, int):
        return None
    return limit, mode, len(names) == 3


def _tokenizer_limit(folder: Path) -> int | None:
    """The sequence limit of a model saved without one in its transformer settings (as
    sentence-transformers 6 saves them): the tokenizer's, within the model's positions."""
    files = folder / "tokenizer_config.json", folder / "config.json"
    if not all(file.is_file() for file in files):
        return None
    tokenizer, config = (_json(file) for file in files)
    limit, positions = tokenizer.get("model_max_length"), config.get("max_position_embeddings")
    if not isinstance(limit, int):
        return None
    return min(limit, positions) if isinstance(positions, int) and positions > 0 else limit


def _pooling_mode(pooling: dict[str, Any]) -> str | None:
    """`mean` or `cls` where the pooling settings ask for exactly that, else None. Older
    settings name the mode as flags (`pooling_mode_mean_tokens: true`), newer as a word."""
    flags = {key for key in pooling if key.startswith("pooling_mode_")}
    if set(pooling) - flags - _POOLING_KEYS or pooling.get("include_prompt", True) is not True:
        return None
    modes = {_FLAG_MODES.get(key, key) for key in flags if pooling[key] is True}
    if isinstance(pooling.get("pooling_mode"), str):
        modes.add(pooling["pooling_mode"])
    return modes.pop() if len(modes) == 1 and modes <= {"mean", "cls"} else None


def _json_list(path: Path) -> list[dict[str, Any]]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return [m for m in loaded if isinstance(m, dict)] if isinstance(loaded, list) else []


def load_exported_model(
    folder: Path, model_id: str, backend: InferenceBackend, exports_dir: Path | None
) -> ExportedSentenceModel | None:
    """The model run from its export, or None where this path does not reproduce it or its
    export is not made yet (the caller loads it through sentence-transformers)."""
    if backend == TORCH or exports_dir is None or not folder.is_dir():
        return None
    layout = plain_layout(folder)
    export = exports_dir / export_id(model_id, backend) / file_name(backend)
    if layout is None or not export.is_file():
        return None
    limit, pooling, normalise = layout
    return ExportedSentenceModel(folder, export, backend, limit, pooling, normalise)


class TokenizerCall:
    """Answers the two calls the embedder makes of a Hugging Face tokenizer (token ids without
    special tokens, and their character offsets) from `tokenizers` alone."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
    ) -> dict[str, Any]:
        texts = [text] if isinstance(text, str) else list(text)
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        ids = [e.ids for e in encoded]
        result: dict[str, Any] = {"input_ids": ids[0] if isinstance(text, str) else ids}
        if return_offsets_mapping:
            offsets = [e.offsets for e in encoded]
            result["offset_mapping"] = offsets[0] if isinstance(text, str) else offsets
        return result


class ExportedSentenceModel:
    """Stands in for a `SentenceTransformer` in `SentenceTransformerEmbedder`: the part of its
    interface the embedder uses, with its batching (longest texts first, `batch_size` a batch,
    each padded to its longest) so that its vectors are those of the sentence-transformers
    path on the same export."""

    device = "cpu"

    def __init__(
        self,
        folder: Path,
        export: Path,
        backend: InferenceBackend,
        max_seq_length: int,
        pooling: str,
        normalise: bool,
    ) -> None:
        from tokenizers import Tokenizer

        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.normalise = normalise
        saved = folder / "config_sentence_transformers.json"
        self.prompts: dict[str, str] = (
            (_json(saved).get("prompts") or {}) if saved.is_file() else {}
        )
        counting = Tokenizer.from_file(str(folder / "tokenizer.json"))
        counting.no_truncation()
        counting.no_padding()
        self.tokenizer = TokenizerCall(counting)
        self._batches = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._batches.enable_truncation(self.max_seq_length)
        self._batches.enable_padding(**_padding(folder, self._batches))
        self._run = export_runner(export, backend)
        self._dimension: int | None = None

    def get_sentence_embedding_dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension"]).shape[1])
        return self._dimension

    def encode(
        self,
        sentences: Sequence[str],
        prompt: str | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        **_: Any,
    ) -> npt.NDArray[np.float32]:
        """Vectors of `sentences` in their order; keyword arguments sentence-transformers
        takes for display or conversion (`show_progress_bar`, `convert_to_numpy`) are ignored."""
        if isinstance(sentences, str):
            one = self.encode([sentences], prompt, 1, normalize_embeddings)
            return cast(npt.NDArray[np.float32], one[0])
        texts = list(sentences)
        if not texts:
            return np.zeros((0, self.get_sentence_embedding_dimension()), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts])
        batches = [
            self._embed_batch(
                [(prompt or "") + texts[i] for i in order[first : first + batch_size]]
            )
            for first in range(0, len(texts), batch_size)
        ]
        vectors = np.concatenate(batches)[np.argsort(order)]
        return _unit(vectors) if normalize_embeddings else vectors

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        encoded = self._batches.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        tokens: npt.NDArray[np.float32] = self._run(feed)
        if self.pooling == "cls":  # the first token that is not padding (padded on the left too)
            first = feed["attention_mask"].argmax(axis=1)
            pooled = tokens[np.arange(len(texts)), first]
        else:
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return _unit(pooled) if self.normalise else pooled.astype(np.float32, copy=False)


def _unit(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to length 1, as torch's `normalize` does (a zero row stays zero)."""
    norms = np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    unit: npt.NDArray[np.float32] = (vectors / norms).astype(np.float32, copy=False)
    return unit


def _padding(folder: Path, tokenizer: Any) -> dict[str, Any]:
    """The pad token and side the model's tokenizer settings name (BERT's [PAD] on the right
    where they name none)."""
    settings: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            settings.update(_json(folder / name))
    token = settings.get("pad_token", "[PAD]")
    token = token.get("content", "[PAD]") if isinstance(token, dict) else str(token)
    pad_id = tokenizer.token_to_id(token)
    return {
        "pad_id": 0 if pad_id is None else pad_id,
        "pad_token": token,
        "direction": settings.get("padding_side", "right"),
    }
