"""A sentence-transformers model's transformer run on ONNX Runtime or OpenVINO, fp32 or int8.

Only the transformer is swapped: tokenizer, pooling, normalisation and a reranker's head (the
classifier, or `index.models.segment_similarity`) stay sentence-transformers' own, so every model
Sluice trains runs on every backend. The swap is the one sentence-transformers itself makes for
`backend="onnx"|"openvino"` (its Transformer module calls a runtime model in place of the torch
one); the export is our own because theirs goes through optimum, which does not install beside
this project's transformers (docs/inference-backends.md).

Exports are made offline from the local weights on first use and kept under `exports_dir`, in a
folder named by the model's files, the backend, and the runtime's version: a retrained model or
an upgraded runtime gets a new export, never a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from index.contracts import InferenceBackend
from index.models.catalog import local_model_stamp, resolve_model_path

EXPORT_FORMAT = 1
"""Bumped when the export below changes, so that older exports are made again."""


def export_id(model_id: str, backend: InferenceBackend, output: str = "last_hidden_state") -> str:
    """`output`: what the export answers; one model id loaded as a bi-encoder (hidden states)
    and as a cross-encoder with a classifier head (`logits`) makes two exports, not one."""
    path = resolve_model_path(model_id)
    parts = [model_id, local_model_stamp(path), backend.label, _runtime_version(backend)]
    parts.append(str(EXPORT_FORMAT))
    if output != "last_hidden_state":  # the exports made before this was keyed stay valid
        parts.append(output)
    key = "|".join(parts)
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)[-60:]
    return f"{readable}-{backend.label}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def export_size(
    model_id: str, backend: InferenceBackend, exports_dir: Path, output: str = "last_hidden_state"
) -> int:
    """Bytes on disk of the export (0 where none is made yet, or for torch)."""
    folder = exports_dir / export_id(model_id, backend, output)
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0


def file_name(backend: InferenceBackend) -> str:
    return "model.onnx" if backend.name == "onnx" else "model.xml"


def _runtime_version(backend: InferenceBackend) -> str:
    if backend.name == "onnx":
        import onnxruntime

        return f"ort{onnxruntime.__version__}"
    if backend.name == "openvino":
        return f"ov{openvino_without_telemetry().__version__}"
    return ""


def output_name(transformer: Any) -> str:
    """`last_hidden_state` for a bi-encoder or the segment head, `logits` for a classifier."""
    names = transformer.modality_config["text"]["method_output_name"]
    return str(names if isinstance(names, str) else names[0])


def input_names(transformer: Any) -> list[str]:
    wanted = ("input_ids", "attention_mask", "token_type_ids")
    return [name for name in wanted if name in transformer.tokenizer.model_input_names]


def export(
    transformer: Any, inputs: list[str], output: str, backend: InferenceBackend, folder: Path
) -> None:
    """Exports into a fresh folder beside `folder` and renames it into place, so that a crash
    leaves no half export and two processes exporting at once both end with a whole one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with _quiet_export():
            onnx_file = work / "model.onnx"
            _export_onnx(transformer, inputs, output, onnx_file)
            if backend.name == "onnx" and backend.quantization == "int8":
                _quantize_onnx(onnx_file)
            elif backend.name == "openvino":
                _convert_openvino(onnx_file, backend.quantization == "int8")
        try:
            work.rename(folder)
        except OSError:  # another process got there first: its export is as good
            if not (folder / file_name(backend)).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """An export is routine, not news: the exporter's tracer warnings, ONNX Runtime's advice
    (logged at WARNING on the root logger) and NNCF's report and progress bar (on stdout,
    where `--json` output goes) would otherwise break the CLI's promise of one line on stderr
    and JSON on stdout."""
    level = logging.root.manager.disable
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def _export_onnx(transformer: Any, inputs: list[str], output: str, path: Path) -> None:
    import torch

    model = transformer.model.eval()

    class Outputs(torch.nn.Module):
        """The one tensor the module reads, from positional inputs (what the exporter traces)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return cast(
                torch.Tensor, getattr(self.model(**dict(zip(inputs, tensors, strict=True))), output)
            )

    sample = transformer.tokenizer(
        ["a short text", "a longer text, to give the exporter a padded batch"],
        padding=True,
        return_tensors="pt",
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Outputs(),
            tuple(sample[name] for name in inputs),
            str(path),
            input_names=inputs,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _quantize_onnx(path: Path) -> None:
    """int8 weights per output channel (per tensor loses too much: minimum cosine to fp32 of
    0.88 measured, against 0.99 per channel), uint8 activations quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("model-int8.onnx")
    quantize_dynamic(
        str(path),
        str(quantized),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"WeightSymmetric": True},
    )
    quantized.replace(path)


def _convert_openvino(onnx_file: Path, int8: bool) -> None:
    """OpenVINO reads the ONNX export directly; int8 compresses the weights (NNCF), and the
    CPU plugin quantises activations at run time."""
    ov = openvino_without_telemetry()
    model = ov.Core().read_model(str(onnx_file))
    if int8:
        import nncf
        from nncf.common.logging.logger import set_log_level

        set_log_level(logging.WARNING)
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(onnx_file.with_name("model.xml")), compress_to_fp16=False)
    onnx_file.unlink()


def export_runner(path: Path, backend: InferenceBackend) -> Callable[[dict[str, Any]], Any]:
    """A callable from the tokenizer's arrays (a dict holding at least the inputs the export
    takes) to the export's one output, as a numpy array of its own."""
    if backend.name == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        onnx_inputs = [i.name for i in session.get_inputs()]

        def run_onnx(feed: dict[str, Any]) -> Any:
            return session.run(None, {name: feed[name] for name in onnx_inputs})[0]

        return run_onnx
    ov = openvino_without_telemetry()
    # OpenVINO's own precision: bf16 on a CPU with bf16 units (1.8x fp32's speed here, vectors
    # within a cosine of 0.99997 of fp32's), else fp32.
    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    ov_inputs = [i.get_any_name() for i in compiled.inputs]

    def run_openvino(feed: dict[str, Any]) -> Any:
        # The output is OpenVINO's own buffer, overwritten by the next call.
        return compiled({name: feed[name] for name in ov_inputs})[0].copy()

    return run_openvino


def openvino_without_telemetry() -> Any:
    """OpenVINO without its usage analytics: openvino and nncf send them (to Google Analytics,
    unless a consent file says no) when `openvino_telemetry` imports, and use a stub when it
    does not. The install script leaves it out; this keeps it out if something installed it."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino
