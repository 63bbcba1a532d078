#!/usr/bin/env bash
# Install l2dynamics (idempotent, quick when done) and say what it installs.
#   bash scripts/setup.sh report   the package and what the mini suite needs (scripts/main.sh)
#   bash scripts/setup.sh dev      also the test, docs and optional extras (scripts/test.sh)
# Into $PYTHON (default python3), or into .venv when that Python is externally managed (PEP 668;
# see scripts/python.sh). torch is pinned first: the CPU build 2.13.0 installs from local disk on
# our machines; asking for plain "torch" would pull the newest CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-dev}
case "$MODE" in
  report) EXTRAS="" ;;
  dev) EXTRAS="[dev]" ;;
  *) echo "setup: unknown mode '$MODE'; use report or dev" >&2; exit 2 ;;
esac
source scripts/python.sh
echo "setup: installing into $("$PY" -c 'import sys; print(sys.prefix)') ($("$PY" --version))"
echo "setup: torch 2.13.0 (CPU build)"
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>/dev/null \
  || "$PY" -m pip install -q --disable-pip-version-check "torch>=2.3"
echo "setup: l2dynamics$EXTRAS (editable)$([ "$MODE" = dev ] && echo ": with pytest, ruff, optuna, ray, lightning, tensorboard, selenium, mkdocs")"
"$PY" -m pip install -q --disable-pip-version-check -e ".$EXTRAS"
# Fashion-MNIST (dataset=fashion_mnist) from Debian's package: the four .gz files, 31 MB, in
# /usr/share/datasets/fashion-mnist. Best effort: without root or apt the set-up still succeeds
# (the offline datasets need no files) and says how to get it.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup: Fashion-MNIST found in /usr/share/datasets/fashion-mnist"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: Fashion-MNIST (apt-get install dataset-fashion-mnist, 31 MB)"
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
echo "setup: done; run with $PY -m l2dynamics (or l2dynamics on that environment's PATH)"
