#!/usr/bin/env bash
# Install the test needs, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/docker-compose -f docker-compose.yml config --quiet
export SLUICE_TEST_DATA_DIR=${SLUICE_TEST_DATA_DIR:-$(mktemp -d)}
.venv/bin/python -m pytest "$@"
