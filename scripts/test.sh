#!/usr/bin/env bash
# Install the test needs, then lint, check the layers, type-check and run the test suite with
# coverage, printed per package at the end. Arguments go to pytest: `--full` adds the tests
# marked `full` (docs/testing.md), `--hypothesis-profile=deep` the property tests' full counts.
set -euo pipefail
cd "$(dirname "$0")/.."
STARTED=$SECONDS
step() { echo "test [$((SECONDS - STARTED)) s] $*" >&2; }
bash scripts/install.sh test
step "ruff check, ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
step "layer contracts (lint-imports)"
.venv/bin/lint-imports
step "mypy (~2 min)"
.venv/bin/mypy
step "compose file"
# docker-compose config exits 0 on a broken file; this fails on anything it prints.
.venv/bin/python scripts/check_compose.py docker-compose.yml
export SLUICE_TEST_DATA_DIR=${SLUICE_TEST_DATA_DIR:-$(mktemp -d)}
export COVERAGE_FILE=${COVERAGE_FILE:-$SLUICE_TEST_DATA_DIR/.coverage}
# The full run measures the processes tests start as well (pyproject.toml, coverage).
case " $* " in *" --full "*) export SLUICE_COVERAGE_PATCH=subprocess ;; esac
step "pytest on every core (the longest step: see the README for how long)"
# A file's tests stay on one worker (--dist loadfile): their module fixtures are built once.
.venv/bin/python -m pytest -n "${SLUICE_TEST_WORKERS:-auto}" --dist loadfile --durations=20 \
  --cov --cov-report= "$@"
.venv/bin/python scripts/coverage_by_package.py
