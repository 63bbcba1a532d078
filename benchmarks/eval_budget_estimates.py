"""Do the studies' estimates survive the evaluation budget? Two reproduce summaries of the same
designs, one run with every evaluation on the whole test set (before: ``eval_budget`` absent or
0) and one under the default budget (after), compared estimate by estimate.

For every table both summaries share (same study key and title) and every row of it (same η
and λ), an estimate of the after-run is "inside" when it lies in the before-run's interval:

- t* and peak test accuracy: the before-run's 95 % t-interval over seeds (``tstar_low`` …
  ``peak_acc_high`` of the t* tables);
- a method's final test accuracy (tuning tables): mean ± t(0.975, n − 1)·SE of the before-run.

Usage: python benchmarks/eval_budget_estimates.py BEFORE/summary.json AFTER/summary.json
       [BEFORE2 AFTER2 …] [--out benchmarks/results/eval_budget_estimates.json]
(one pair per suite; the records of all pairs go into one file).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from scipy import stats

QUANTITIES = (("tstar", "tstar_low", "tstar_high", "t* (steps)"),
              ("peak_acc", "peak_acc_low", "peak_acc_high", "peak test accuracy"))


def _tables(summary: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["key"], t["title"]): t for s in summary.get("studies", [])
            for t in s.get("tables") or []}


def _rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


def _finite(*values: Any) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per estimate both runs have: study, table, η, λ (or method), quantity,
    the before-run's estimate and interval, the after-run's estimate, and ``inside``."""
    out = []
    after_tables = _tables(after)
    for (key, title), table in _tables(before).items():
        other = after_tables.get((key, title))
        if other is None:
            continue
        cols = set(table["columns"])
        if {"tstar", "lam", "lr"} <= cols:
            then = {(r["lr"], r["lam"]): r for r in _rows(table)}
            for r in _rows(other):
                b = then.get((r["lr"], r["lam"]))
                if b is None:
                    continue
                for name, low, high, label in QUANTITIES:
                    if _finite(b[name], b[low], b[high], r[name]):
                        out.append({"study": key, "table": title, "lr": r["lr"], "lam": r["lam"],
                                    "quantity": label, "before": b[name],
                                    "interval": [b[low], b[high]], "after": r[name],
                                    "inside": b[low] <= r[name] <= b[high]})
        elif "final test acc (seed mean)" in cols:
            then = {r["method"]: r for r in _rows(table)}
            for r in _rows(other):
                b = then.get(r["method"])
                mean, se, n = (b or {}).get("final test acc (seed mean)"), (b or {}).get(
                    "SE of the mean"), (b or {}).get("seeds")
                if b is None or not _finite(mean, se, r["final test acc (seed mean)"]) or n < 2:
                    continue
                half = float(stats.t.ppf(0.975, n - 1)) * se
                value = r["final test acc (seed mean)"]
                out.append({"study": key, "table": title, "method": r["method"],
                            "quantity": "final test accuracy", "before": mean,
                            "interval": [mean - half, mean + half], "after": value,
                            "inside": mean - half <= value <= mean + half})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", type=Path, nargs="+",
                        help="BEFORE AFTER pairs of reproduce summary.json files")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/eval_budget_estimates.json"))
    args = parser.parse_args(argv)
    if len(args.summaries) % 2:
        parser.error("give the summaries in BEFORE AFTER pairs")
    records, pairs = [], []
    for before_path, after_path in zip(args.summaries[::2], args.summaries[1::2], strict=True):
        before, after = (json.loads(p.read_text()) for p in (before_path, after_path))
        records += compare(before, after)
        pairs.append({side: {"suite": s.get("suite"), "created": s.get("created")}
                      for side, s in (("before", before), ("after", after))})
    inside = sum(r["inside"] for r in records)
    result = {"command": "python benchmarks/eval_budget_estimates.py "
                         + " ".join(str(p) for p in args.summaries),
              "pairs": pairs, "estimates": len(records), "inside": inside, "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    for r in records:
        if not r["inside"]:
            where = r.get("method") or f"η={r['lr']:g} λ={r['lam']:g}"
            print(f"outside: {r['study']} / {r['table']} / {where} / {r['quantity']}: "
                  f"{r['after']:.4g} vs {r['before']:.4g} [{r['interval'][0]:.4g}, "
                  f"{r['interval'][1]:.4g}]")
    print(f"{inside} of {len(records)} estimates inside the before-run's interval → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
