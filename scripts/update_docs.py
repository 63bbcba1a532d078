"""Bring a reproduce report into the docs: its summary and its figures.

    python scripts/update_docs.py --report report

copies ``report/summary.json`` to ``benchmarks/results/reproduce_<suite>.json`` (the suite is read
from the summary) and each study's figures from ``report/figures/<key>/`` to
``docs/studies/figures/<suite>/<key>/``, replacing that study's old figures. The docs build
(scripts/docs_hooks.py) renders the study pages from these two. Studies missing from the report
(a run with ``--only``) keep their old entry and figures unless ``--replace`` is given.

``--cold SUMMARY`` records the wall times of a cold run (a fresh store) of the same suite,
``cold_wall_seconds`` and ``cold_study_seconds``, when the report is a later re-run that
reused its runs; it is refused unless every claim's verdict of the two runs is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Keys a person once added by hand to describe an older run; they no longer describe a new one.
STALE_KEYS = ("cold_wall_seconds", "cold_command", "cold_study_seconds")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def merge(old: dict[str, Any] | None, new: dict[str, Any], *, replace: bool) -> dict[str, Any]:
    """The new summary, plus the old summary's studies the new one did not run (unless replace)."""
    if replace or not old:
        return new
    ran = {s["key"] for s in new.get("studies") or []}
    kept = [s for s in old.get("studies") or [] if s["key"] not in ran]
    if not kept:
        return new
    merged = dict(new)
    merged["studies"] = list(new.get("studies") or []) + kept
    merged["kept_from_previous"] = sorted(s["key"] for s in kept)
    return merged


def cold_times(new: dict[str, Any], cold: dict[str, Any]) -> dict[str, Any]:
    """The cold run's times for `new`, after checking that both runs judged the same."""
    def verdicts(summary: dict[str, Any]) -> dict[str, list[str]]:
        return {s["key"]: [c["verdict"] for c in s.get("claims") or []]
                for s in summary.get("studies") or []}
    if cold.get("suite") != new.get("suite") or verdicts(cold) != verdicts(new):
        raise SystemExit("error: --cold is not a run of the same suite with the same verdicts")
    return {"cold_wall_seconds": cold["wall_seconds"], "cold_command": cold.get("command"),
            "cold_study_seconds": {s["key"]: s["wall_seconds"] for s in cold["studies"]}}


def update(report: Path, *, root: Path = ROOT, replace: bool = False,
           cold: Path | None = None) -> list[str]:
    """Copy `report`'s summary and figures into `root`; return what was done, one line each."""
    summary_path = report / "summary.json"
    if not summary_path.is_file():
        raise SystemExit(f"error: {summary_path} not found (is {report} a reproduce --out folder?)")
    new = json.loads(summary_path.read_text())
    suite = new.get("suite")
    if not isinstance(suite, str) or not suite.isidentifier():
        raise SystemExit(f"error: {summary_path} has no valid 'suite' (got {suite!r})")
    target = root / "benchmarks" / "results" / f"reproduce_{suite}.json"
    old = json.loads(target.read_text()) if target.is_file() else None
    done = []
    dropped = [k for k in STALE_KEYS if old and k in old and k not in new and cold is None]
    if dropped:
        done.append(f"dropped {', '.join(dropped)} (they described the previous run)")
    if cold is not None:
        new = {**new, **cold_times(new, json.loads(Path(cold).read_text()))}
        done.append(f"cold run times from {cold}: {new['cold_wall_seconds']:.0f} s")
    merged = merge(old, new, replace=replace)
    if merged.get("kept_from_previous"):
        done.append("kept from the previous summary: " + ", ".join(merged["kept_from_previous"]))
    _write_json(target, merged)
    done.append(f"wrote {target.relative_to(root)}")

    figures_root = root / "docs" / "studies" / "figures" / suite
    for study in new.get("studies") or []:
        key = study["key"]
        dest = figures_root / key
        if dest.exists():
            shutil.rmtree(dest)
        copied = 0
        for fig in study.get("figures") or []:
            src = report / fig["path"]
            if not src.is_file():
                done.append(f"missing in the report: {fig['path']}")
                continue
            out = figures_root / fig["path"].removeprefix("figures/")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
            copied += 1
        done.append(f"{key}: {copied} figure(s) → {dest.relative_to(root)}")
    if replace and figures_root.is_dir():
        keys = {s["key"] for s in new.get("studies") or []}
        for stale in figures_root.iterdir():
            if stale.is_dir() and stale.name not in keys:
                shutil.rmtree(stale)
                done.append(f"removed figures of {stale.name} (not in the report)")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, required=True,
                        help="a `l2dynamics reproduce --out` folder (summary.json, figures/)")
    parser.add_argument("--replace", action="store_true",
                        help="drop studies (and their figures) that the report did not run")
    parser.add_argument("--cold", type=Path, default=None,
                        help="summary.json of a cold run of the same suite: record its times")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for line in update(args.report, root=args.root, replace=args.replace, cold=args.cold):
        print(line)
    print("now: python3 -m mkdocs build --strict -d /tmp/site", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
