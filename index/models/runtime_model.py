"""The torch model's stand-in that runs an exported transformer (see `index.models.exports`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from index.contracts import TORCH, InferenceBackend
from index.models.exported_model import save_tokenizer
from index.models.exports import (
    export,
    export_id,
    export_runner,
    file_name,
    input_names,
    output_name,
)


class RuntimeModel(torch.nn.Module):
    """Stands in for the torch model inside a sentence-transformers Transformer module: called
    with the tokenizer's tensors, it answers `{output: tensor}` from the exported model."""

    def __init__(
        self, path: Path, backend: InferenceBackend, inputs: list[str], output: str, config: Any
    ) -> None:
        super().__init__()
        self.path = path
        self.backend = backend
        self.inputs = inputs
        self.output = output
        self.config = config  # the module reads e.g. `output_hidden_states` from it
        self._run = export_runner(path, backend)

    def forward(self, **features: Any) -> dict[str, Any]:
        result = self._run({name: features[name].cpu().numpy() for name in self.inputs})
        return {self.output: torch.from_numpy(result)}


def accelerate(
    model: Any, backend: InferenceBackend, model_id: str, exports_dir: Path | None
) -> None:
    """Swaps the transformer of a loaded `SentenceTransformer` or `CrossEncoder` for one run by
    `backend` (torch: left as it is), exporting it into `exports_dir` first where no export of
    these model files exists, and saving its tokenizer beside the export (what a later process
    needs to run it without torch: `index.models.exported_model`)."""
    if backend == TORCH:
        return
    if exports_dir is None:
        raise ValueError(f"the {backend.label} backend needs a folder for its exports")
    transformer = model[0]
    output, inputs = output_name(transformer), input_names(transformer)
    folder = exports_dir / export_id(model_id, backend, output)
    file = folder / file_name(backend)
    if not file.is_file():
        export(transformer, inputs, output, backend, folder)
    if isinstance(transformer.max_seq_length, int):  # what runs the export without torch
        save_tokenizer(transformer.tokenizer, transformer.max_seq_length, folder)
    transformer.model = RuntimeModel(file, backend, inputs, output, transformer.model.config)
