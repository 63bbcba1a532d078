"""The MNIST-1D t* study (configs/sweeps/mnist1d_tstar.yaml) judged under the current rules.

Reads a store that the sweep has filled, runs the t* analysis for every estimator (per-λ seed
intervals, the slope fit with its margin and budget check, the claims) and writes
``benchmarks/results/mnist1d_tstar.json``, which the docs render.

    l2dynamics sweep configs/sweeps/mnist1d_tstar.yaml --store runs/mnist1d_tstar.sqlite -j 2
    python benchmarks/mnist1d_tstar.py --store runs/mnist1d_tstar.sqlite
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

try:
    from benchmarks.common import RESULTS, machine
except ImportError:  # run as a script
    from common import RESULTS, machine

from l2dynamics.analysis.tstar import tstar_fits, tstar_summary, tstar_table, tstar_verdict
from l2dynamics.store import RunStore

ESTIMATORS = ("raw", "smoothed", "onset")


def _records(frame) -> list[dict]:
    rows = frame.to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else
                 v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "mnist1d_tstar.json")
    args = parser.parse_args()
    with RunStore(args.store, create=False) as store:
        table = tstar_table(store)
    out = {"command": "l2dynamics sweep configs/sweeps/mnist1d_tstar.yaml --store "
                      "runs/mnist1d_tstar.sqlite -j 2; python benchmarks/mnist1d_tstar.py "
                      "--store runs/mnist1d_tstar.sqlite",
           "date": machine()["date"], "machine": f"{machine()['cpu']}, "
           f"{machine()['cores']} cores, torch {machine()['torch']}", "runs": len(table)}
    for est in ESTIMATORS:
        out[est] = {"summary": _records(tstar_summary(table, estimator=est)),
                    "fits": _records(tstar_fits(table, estimator=est)),
                    "verdict": _records(tstar_verdict(table, estimator=est))}
        for fit in out[est]["fits"]:
            print(f"{est:>8} η={fit['lr']:g}: slope {fit['slope']} "
                  f"[{fit['ci_low']}, {fit['ci_high']}] over {fit['used']} runs → "
                  f"{fit['verdict']}  {fit['note'] or ''}")
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
