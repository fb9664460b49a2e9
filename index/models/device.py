"""Where a model runs: the device (`auto` picks a GPU where there is one) and the inference
runtime the settings ask for on this machine."""

from __future__ import annotations

import glob
import sys
from typing import cast

from config.model_names import Backend, Quantization
from index.contracts import TORCH, InferenceBackend


def pick_device(requested: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu."""
    if requested != "auto":
        return requested
    if not could_have_gpu():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


GPU_SIGNS = (
    "/dev/nvidia[0-9]*",  # CUDA, containers and MIG included
    "/dev/nvidiactl",  # the driver loaded, device files not made yet (no persistence daemon)
    "/proc/driver/nvidia/gpus/*",
    "/dev/nvhost-ctrl-gpu",  # Jetson
    "/dev/dxg",  # WSL
    "/dev/kfd",  # ROCm
)


def could_have_gpu() -> bool:
    """Whether torch could find a GPU here, answered without importing it (1-2 s of CPU, and
    a process on the CPU backends needs torch for nothing else): on Linux, only where a GPU
    driver shows (`GPU_SIGNS`) or torch is imported already; elsewhere (macOS's MPS) torch is
    asked."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return True
    return any(glob.glob(sign) for sign in GPU_SIGNS)


def choose_backend(name: str, quantization: str, device: str) -> InferenceBackend:
    """What the settings ask for on this machine: `auto` is torch where `device` resolves to
    a GPU (fp16 there), else OpenVINO; quantization does not apply to torch unless asked."""
    if name == "auto":
        name = "torch" if pick_device(device) != "cpu" else "openvino"
    if name == "torch":
        return TORCH
    return InferenceBackend(cast(Backend, name), cast(Quantization, quantization))


def device_for(backend: InferenceBackend, device: str) -> str:
    """The device a backend runs on: ONNX Runtime and OpenVINO run here on the CPU, so `auto`
    means the CPU for them; asking them for a GPU is an error rather than a silent CPU run."""
    if backend.name == "torch":
        return device
    if device in ("auto", "cpu"):
        return "cpu"
    raise ValueError(
        f"the {backend.name} backend runs on the CPU, not on '{device}': use the torch "
        "backend on a GPU (SLUICE_EMBEDDING_BACKEND=torch / SLUICE_RERANK_BACKEND=torch)"
    )
