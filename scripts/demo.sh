#!/usr/bin/env bash
# Install, ingest the project's own documentation, and serve /retrieve on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export SLUICE_DATA_DIR=${SLUICE_DATA_DIR:-.sluice-demo}
exec .venv/bin/sluice demo "$@"
