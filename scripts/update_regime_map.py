"""Record a run of the regime study: the data for the docs and the rule the λ selector cites.

    l2dynamics study regime --suite regime --out out/regime     # the run (resumable)
    python scripts/update_regime_map.py out/regime

writes ``benchmarks/results/regime.json`` (every cell's quantities, the claims, the boundary,
the design, when and where it ran), copies the map figure to ``docs/studies/figures/regime/``,
and writes the package's ``l2dynamics/studies/suites/regime_map.json``: the boundary, its
sentence and each cell's verdict, which ``l2dynamics choose`` cites
(:func:`l2dynamics.studies.study_regime.regime_note`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _clean(value):
    if isinstance(value, float) and value != value:
        return None
    return value


def main() -> None:
    from l2dynamics.analysis.regime import boundary_sentence
    from l2dynamics.provenance import versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the --out folder of `l2dynamics study regime`")
    parser.add_argument("--command", default=None, help="the command that made the run")
    parser.add_argument("--wall-seconds", type=float, default=None,
                        help="the training run's wall time, when OUT is a later re-analysis "
                        "that reused its stored runs")
    args = parser.parse_args()
    result = json.loads((args.out / "result.json").read_text(encoding="utf-8"))
    cells = pd.read_csv(args.out / "regime_cells.csv")
    boundary = {k: _clean(v) for k, v in json.loads(
        (args.out / "regime_boundary.json").read_text(encoding="utf-8")).items()}
    rows = [{k: _clean(v) for k, v in row.items()} for row in cells.to_dict(orient="records")]
    sentence = boundary_sentence({k: float("nan") if v is None else v
                                  for k, v in boundary.items()})
    design = result["design"]
    network = (f"a {design['base'].get('depth')}-hidden-layer FC network in "
               f"{design['base'].get('parameterization')} parameterization")
    if any(cell.get("network", "fc") != "fc" for cell in design["cells"]):
        network += (f" and a {design['cnn_base'].get('depth')}-layer CNN without and with "
                    "BatchNorm")
    network += " on Fashion-MNIST"
    record = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "command": args.command or f"l2dynamics study regime --suite regime --out {args.out}",
        "versions": versions(),
        "wall_seconds": args.wall_seconds or result["wall_seconds"],
        "description": result["description"], "design": design, "cells": rows,
        "boundary": boundary, "sentence": sentence, "claims": result["claims"],
    }
    target = ROOT / "benchmarks" / "results" / "regime.json"
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
                      encoding="utf-8")
    figures = ROOT / "docs" / "studies" / "figures" / "regime"
    figures.mkdir(parents=True, exist_ok=True)
    for fig in result["figures"]:
        shutil.copy2(fig["path"], figures / Path(fig["path"]).name)
    rule = {"source": "benchmarks/results/regime.json", "created": record["created"],
            "measured_on": result["description"].split("; FC cells")[0], "network": network,
            "boundary": boundary, "sentence": sentence,
            "cells": [{k: row.get(k) for k in ("network", "n_train", "width", "loss",
                                               "params_per_example", "verdict")}
                      for row in rows]}
    package = ROOT / "src" / "l2dynamics" / "studies" / "suites" / "regime_map.json"
    package.write_text(json.dumps(rule, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
                       encoding="utf-8")
    print(f"wrote {target}, {package} and {figures}")
    print(sentence)


if __name__ == "__main__":
    main()
