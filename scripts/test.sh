#!/usr/bin/env bash
# Install, lint, and run the test suite (slow tests included; pass -m "not slow" to skip them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
python3 -m pytest -q "$@"
