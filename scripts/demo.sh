#!/usr/bin/env bash
# Install, ingest the project's own documentation, and serve /retrieve on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The default data dir (.sluice, or SLUICE_DATA_DIR when set): every later command run in this
# folder finds what the demo ingested.
exec .venv/bin/sluice demo "$@"
