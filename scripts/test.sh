#!/usr/bin/env bash
# Install with the dev extras, lint, and run the test suite (slow tests included; pass
# -m "not slow" to skip them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
source scripts/python.sh
"$PY" -m ruff check .
"$PY" -m pytest -q "$@"
