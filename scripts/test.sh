#!/usr/bin/env bash
# Set up (idempotent) and run every check: lint, the test suite, and the edge-only environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh full edge cloud ls

echo "[test] ruff"
.venv/bin/ruff check .

echo "[test] import contracts (the layers of docs/architecture.md, no import circle)"
.venv/bin/lint-imports

echo "[test] edge-only environment (.venv-edge: no torch, no ultralytics)"
PLI_EDGE_ENV=1 PLI_FULL_PYTHON="$PWD/.venv/bin/python" .venv-edge/bin/python -m pytest -q -p no:cacheprovider tests/edge_env

echo "[test] full suite"
.venv/bin/python -m pytest -q "$@"
