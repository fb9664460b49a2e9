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
STARTED=$SECONDS
# One line per step with the time so far: pip -q is silent for minutes otherwise.
step() { echo "install [$((SECONDS - STARTED)) s] $*" >&2; }
step "pip"
"${PIP[@]}" install --upgrade pip
# torch first and pinned, so nothing later pulls a multi-GB CUDA build on a CPU machine.
step "torch 2.13.0 (CPU)"
"${PIP[@]}" install -c constraints.txt "torch==2.13.0"
# The client is a distribution of its own (clients/python), which the server's models come from.
step "sluice-client (clients/python)"
"${PIP[@]}" install -c constraints.txt -e clients/python
step "sluice${EXTRAS:+[$EXTRAS]} and its dependencies (the longest step on a new machine)"
"${PIP[@]}" install -c constraints.txt -e ".${EXTRAS:+[$EXTRAS]}"
# unstructured's PDF partitioner imports a few modules of unstructured-inference; its declared
# dependencies (timm, torchvision, accelerate) are only for layout models we do not use, and
# torchvision breaks beside the pinned CPU torch. See docs/parsing.md.
"${PIP[@]}" install -c constraints.txt --no-deps "unstructured-inference>=1.6,<1.7"
# openvino and nncf declare openvino-telemetry, which sends usage events to Google Analytics;
# both run without it (index/models/exports.py also keeps it from importing).
"${PIP[@]}" uninstall -y openvino-telemetry 2>/dev/null || true
step "OCR (tesseract)"
# OCR of scanned PDFs and images (ingest/ocr.py) runs the `tesseract` program: installed from the
# system's packages where this runs as root with apt; elsewhere parsing says how to get it, and
# SLUICE_OCR=off turns it off.
if ! command -v tesseract >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q --no-install-recommends tesseract-ocr tesseract-ocr-eng >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
        && apt-get install -y -q --no-install-recommends tesseract-ocr tesseract-ocr-eng >/dev/null 2>&1; } \
      || echo "note: could not install Tesseract; scanned PDFs and images will not be read (docs/parsing.md)" >&2
  else
    echo "note: Tesseract is not installed; scanned PDFs and images will not be read until it is (docs/parsing.md)" >&2
  fi
fi
if [[ ",$EXTRAS," == *",test,"* ]]; then
  step "PostgreSQL server (for the state tests)"
  # The state contract tests start a real PostgreSQL server (tests/postgres_server.py) from the
  # system's packages; without one they skip and say why.
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
          && apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; } \
        || echo "note: could not install PostgreSQL; the tests that need a server will skip" >&2
    else
      echo "note: no PostgreSQL server binaries (pg_ctl); the tests that need one will skip" >&2
    fi
  fi
fi
step "done"
