#!/usr/bin/env bash
# The main job: install, then reproduce both papers in miniature (embedded data, 2-core CPU)
# and write the HTML report to report/index.html (figures, verdicts, summary.json).
# Finished runs are kept in report/runs.sqlite, so a second call only redoes the analysis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
l2dynamics reproduce --suite mini --out report "$@"
