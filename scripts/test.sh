#!/usr/bin/env bash
# Install the test needs, then lint, check the layers, type-check and run the whole test suite
# with coverage, printed per package at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/mypy
# docker-compose config exits 0 on a broken file; this fails on anything it prints.
.venv/bin/python scripts/check_compose.py docker-compose.yml
export SLUICE_TEST_DATA_DIR=${SLUICE_TEST_DATA_DIR:-$(mktemp -d)}
export COVERAGE_FILE=${COVERAGE_FILE:-$SLUICE_TEST_DATA_DIR/.coverage}
.venv/bin/python -m pytest --cov --cov-report= "$@"
.venv/bin/python scripts/coverage_by_package.py
