"""What a model setting may name: a folder here, or a model hub id (`org/name`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

Backend = Literal["torch", "onnx", "openvino"]
"""The runtimes a model's transformer runs on."""
BackendSetting = Literal["auto", Backend]
"""What a backend setting may say: `auto` picks one for the machine."""
Quantization = Literal["none", "int8"]

HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def valid_model_name(model: str) -> str:
    """Checked when the config loads; whether a hub id can be had is checked on use."""
    if Path(model).expanduser().is_dir() or HUB_ID.match(model):
        return model
    raise ValueError(
        f"'{model}' is neither a model folder here nor a model hub id ('org/name'); "
        "`sluice models` lists the models usable on this machine"
    )
