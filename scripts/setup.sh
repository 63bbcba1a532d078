#!/usr/bin/env bash
# Install l2dynamics and its test tools into the current Python (idempotent, quick when done).
# torch is pinned first: the CPU build 2.13.0 installs from local disk on our machines; asking
# for plain "torch" would pull the newest CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>/dev/null \
  || "$PY" -m pip install -q --disable-pip-version-check "torch>=2.3"
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
