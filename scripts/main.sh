#!/usr/bin/env bash
# The main job: install, then train an MLP on MNIST-1D at several λ and write its figure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
l2dynamics quickstart --out out/quickstart "$@"
