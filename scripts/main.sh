#!/usr/bin/env bash
# The main job: install what the report needs, then reproduce both papers in miniature
# (Fashion-MNIST first, then embedded data; 2-core CPU) and write the HTML report to
# report/index.html (figures, verdicts, summary.json). Finished runs are kept in
# report/runs.sqlite, so a second call only redoes the analysis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh report
source scripts/python.sh
"$PY" -m l2dynamics reproduce --suite mini --out report "$@"
