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
# Fashion-MNIST (dataset=fashion_mnist) from Debian's package: the four .gz files, 31 MB, in
# /usr/share/datasets/fashion-mnist. Best effort: without root or apt the set-up still succeeds
# (the offline datasets need no files) and says how to get it.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "setup: could not install Fashion-MNIST; try 'apt-get install dataset-fashion-mnist'," \
            "or put its four IDX files in ~/.cache/l2dynamics/data/fashion_mnist/ (docs/guides/data.md)"
else
  echo "setup: Fashion-MNIST (dataset=fashion_mnist) is not installed; as root run" \
       "'apt-get install dataset-fashion-mnist', or put its four IDX files in" \
       "~/.cache/l2dynamics/data/fashion_mnist/ (docs/guides/data.md)"
fi
