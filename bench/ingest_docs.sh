#!/usr/bin/env bash
# Ingest every file of ../shared/data/docs into a fresh embedded index and print the JSON report.
# Usage: bash bench/ingest_docs.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-$(mktemp -d)}
export SLUICE_DATA_DIR=$DATA_DIR
start=$(date +%s.%N)
# Exit 4 means "completed with failed documents" (two of the shared PDFs are scans needing OCR).
.venv/bin/sluice ingest ../shared/data/docs --exclude MANIFEST.tsv --json || [ $? -eq 4 ]
end=$(date +%s.%N)
echo "wall seconds (including Prefect start and model load): $(echo "$end - $start" | bc)" >&2
echo "data dir: $DATA_DIR" >&2
