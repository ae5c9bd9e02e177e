#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest. CI runs exactly this (via README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check bridge signalling web tests benchmarks
ruff format --check bridge signalling web tests benchmarks
mypy
python -m pytest "$@"
