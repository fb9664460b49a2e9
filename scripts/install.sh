#!/usr/bin/env bash
# Create .venv and install Sluice (CPU torch, pinned) with the given extras, e.g. `test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# torch first and pinned, so nothing later pulls a multi-GB CUDA build on a CPU machine.
"${PIP[@]}" install -c constraints.txt "torch==2.13.0"
"${PIP[@]}" install -c constraints.txt -e ".${EXTRAS:+[$EXTRAS]}"
# unstructured's PDF partitioner imports a few modules of unstructured-inference; its declared
# dependencies (timm, torchvision, accelerate) are only for layout models we do not use, and
# torchvision breaks beside the pinned CPU torch. See docs/parsing.md.
"${PIP[@]}" install -c constraints.txt --no-deps "unstructured-inference>=1.6,<1.7"
# openvino and nncf declare openvino-telemetry, which sends usage events to Google Analytics;
# both run without it (index/inference_backends.py also keeps it from importing).
"${PIP[@]}" uninstall -y openvino-telemetry 2>/dev/null || true
