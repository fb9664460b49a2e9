"""A sentence-transformers bi-encoder run from its export alone: `tokenizers` for the text,
OpenVINO or ONNX Runtime for the transformer, numpy for pooling. No torch, transformers or
sentence-transformers enters the process.

Loading a model through sentence-transformers costs a process 8 s of CPU and 660 MB before its
first vectors, only to swap the torch transformer for the export; this way 1 s and 175 MB
(bench/model_load_paths.py). Every `sluice` process that embeds paid it: the API, each ingest,
each scheduled run. It applies where the model is a plain one that this module reads whole (a
Transformer, mean or CLS pooling, an optional Normalize, no setting that changes vectors
otherwise) and a load through sentence-transformers has made its export and saved the tokenizer
beside it as transformers builds it (`save_tokenizer`); anything else (a Dense layer, another
pooling, `truncate_dim`, a GPU, a model not exported yet) loads through sentence-transformers.
Both paths run the same export on the same token arrays, batched alike, so their vectors agree
to float rounding (tests/test_exported_model.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from index.contracts import TORCH, InferenceBackend
from index.models.exports import export_id, export_runner, file_name

logger = logging.getLogger(__name__)

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
`max_seq_length` (the limit in effect is saved with the export), the only ones it accepts."""
_PLAIN_MODEL_KEYS = {"__version__", "prompts", "model_type", "similarity_fn_name"}
"""Settings of `config_sentence_transformers.json` that change no vector (`truncate_dim` and
`default_prompt_name` do: a model that sets them is not plain)."""
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_SETTINGS_FILE = "tokenizer-settings.json"
"""Saved beside the export by a load through sentence-transformers (`save_tokenizer`): the
tokenizer as transformers builds it (its normaliser, pre-tokeniser and special tokens rebuilt
from `tokenizer_config.json`, which the model's `tokenizer.json` alone does not say), and the
sequence limit, sides and padding in effect."""


def _json(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _json_list(path: Path) -> list[dict[str, Any]]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return [m for m in loaded if isinstance(m, dict)] if isinstance(loaded, list) else []


def plain_layout(folder: Path) -> tuple[str, bool] | None:
    """(pooling mode, normalise) where the folder holds a plain model whose every setting
    this module honours; None otherwise."""
    listing = folder / "modules.json"
    if not listing.is_file():
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
    model_file = folder / "config_sentence_transformers.json"
    model = _json(model_file) if model_file.is_file() else {}
    if {key for key, value in model.items() if value is not None} - _PLAIN_MODEL_KEYS:
        return None
    mode = _pooling_mode(pooling)
    return None if mode is None else (mode, len(names) == 3)


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


def load_exported_model(
    folder: Path, model_id: str, backend: InferenceBackend, exports_dir: Path | None
) -> ExportedSentenceModel | None:
    """The model run from its export, or None where this path does not reproduce it, where
    its export or the tokenizer saved with it is not made yet, or where they fail to load
    (the caller loads it through sentence-transformers, which makes what is missing)."""
    if backend == TORCH or exports_dir is None or not folder.is_dir():
        return None
    export = exports_dir / export_id(model_id, backend) / file_name(backend)
    saved = [export.with_name(name) for name in (TOKENIZER_FILE, TOKENIZER_SETTINGS_FILE)]
    layout = plain_layout(folder)
    if layout is None or not all(file.is_file() for file in (export, *saved)):
        return None
    try:
        return ExportedSentenceModel(folder, export, backend, *layout)
    except Exception as error:  # a damaged export: the slower path still answers, or says why
        logger.warning("%s not run from its export: %s: %s", model_id, type(error).__name__, error)
        return None


def save_tokenizer(tokenizer: Any, max_seq_length: int, folder: Path) -> None:
    """Saves what this path needs of a transformers tokenizer, as sentence-transformers runs
    it, beside the export in `folder`; each file is written whole or not at all."""
    settings = {
        "max_seq_length": int(max_seq_length),
        "padding_side": str(tokenizer.padding_side),
        "truncation_side": str(tokenizer.truncation_side),
        "pad_token": str(tokenizer.pad_token),
        "pad_id": int(tokenizer.pad_token_id),
        "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
    }
    texts = {
        TOKENIZER_FILE: tokenizer.backend_tokenizer.to_str(),
        TOKENIZER_SETTINGS_FILE: json.dumps(settings),
    }
    for name, text in texts.items():
        if not (folder / name).is_file():
            work = folder / f".{name}.{os.getpid()}"
            work.write_text(text, encoding="utf-8")
            work.replace(folder / name)


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
        self, folder: Path, export: Path, backend: InferenceBackend, pooling: str, normalise: bool
    ) -> None:
        from tokenizers import Tokenizer

        settings = _json(export.with_name(TOKENIZER_SETTINGS_FILE))
        self.max_seq_length = int(settings["max_seq_length"])
        self.pooling = pooling
        self.normalise = normalise
        saved = folder / "config_sentence_transformers.json"
        self.prompts: dict[str, str] = (
            (_json(saved).get("prompts") or {}) if saved.is_file() else {}
        )
        tokenizer_file = str(export.with_name(TOKENIZER_FILE))
        counting = Tokenizer.from_file(tokenizer_file)
        counting.no_truncation()
        counting.no_padding()
        self.tokenizer = TokenizerCall(counting)
        self._batches = Tokenizer.from_file(tokenizer_file)
        self._batches.enable_truncation(self.max_seq_length, direction=settings["truncation_side"])
        self._batches.enable_padding(
            direction=settings["padding_side"],
            pad_id=settings["pad_id"],
            pad_type_id=settings["pad_type_id"],
            pad_token=settings["pad_token"],
        )
        self._run = export_runner(export, backend)
        # Measured here, before the model is shared: a call into it from `dimension` later
        # would race the embedder's locked calls for the runtime's one infer request.
        self._dimension = int(self._embed_batch(["dimension"]).shape[1])

    def get_sentence_embedding_dimension(self) -> int:
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
