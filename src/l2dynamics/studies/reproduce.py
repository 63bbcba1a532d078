"""`l2dynamics reproduce`: every study of a suite, one command, one HTML report.

A loop over a suite's entries (:mod:`l2dynamics.studies.suite`): each study runs through the
run store (a re-run reuses every finished run and only recomputes its analysis and figures),
writes its figures under ``<out>/figures/<key>/`` and returns its verdicts. The driver times
each study, catches a failing one (the others go on; the report shows the error) and renders
``<out>/index.html`` and ``<out>/summary.json`` (:mod:`l2dynamics.report.html`).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from l2dynamics.errors import ConfigError
from l2dynamics.studies.base import Context, execute, make_params
from l2dynamics.studies.suite import SUITES, Entry, entry_reads_user_files, load_suite

__all__ = ["SUITES", "reproduce", "run_entry", "store_runs"]


def run_entry(entry: Entry, ctx: Context, command: str,
              changelog: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One suite entry as a report entry (status "failed" with the error if it raises), with
    where its design is fixed and every recorded change of it made after looking at results."""
    import time

    from l2dynamics.studies.registry import get_study

    study = get_study(entry.study)
    record: dict[str, Any] = {"key": entry.key, "study": entry.study,
                              "title": entry.title or study.title, "paper": study.paper,
                              "command": f"{command} --only {entry.key}",
                              "design_source": f"studies/suites/{ctx.suite}.yaml, entry "
                                               f"{entry.key!r}: the study's defaults with "
                                               f"{len(entry.params)} parameter(s) set there",
                              "design_history": [dict(c) for c in changelog
                                                 if c.get("study") == entry.key]}
    start = time.perf_counter()
    try:
        params = make_params(study.Params, entry.params)
        outcome = execute(study, params, ctx.for_key(entry.key))
    except Exception as exc:  # one failing study must not sink the report
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", description="",
                      claims=[], figures=[], tables=[], configs={})
        ctx.log(traceback.format_exc())
    else:
        record.update(status="ok", error=None, description=outcome.description,
                      claims=[c.to_dict() for c in outcome.claims],
                      figures=[f.to_dict(ctx.rel(f.path)) for f in outcome.figures],
                      tables=outcome.tables, configs=outcome.design)
    record["wall_seconds"] = time.perf_counter() - start
    return record


def reproduce(suite: str = "mini", out_dir: str | Path = "report", *,
              store: str | Path | None = None, workers: int = 2,
              only: Sequence[str] | None = None, data_dir: str | Path | None = None,
              steps_scale: float = 1.0, subset: int | None = None, fast: bool = True,
              command: str | None = None, log: Callable[[str], None] = print,
              executor: str = "local", address: str | None = None) -> dict[str, Any]:
    """Run every study of `suite` (or the entries in `only`), write the report; the summary.

    ``executor="ray"``: the runs of the studies whose ``distributed`` is set are Ray tasks on
    the cluster at `address` (default: a Ray instance on this machine); the others train here,
    and the log says so."""
    import time

    from l2dynamics.provenance import machine, versions
    from l2dynamics.report.html import render_report

    spec = load_suite(suite)
    if not (math.isfinite(steps_scale) and steps_scale > 0):
        raise ConfigError(f"steps_scale must be finite and > 0 (got {steps_scale!r})")
    entries = spec.entries
    if only:
        unknown = sorted(set(only) - set(spec.keys()))
        if unknown:
            raise ConfigError(f"unknown studies {unknown} for suite {suite!r}; available: "
                              f"{', '.join(spec.keys())}")
        entries = [e for e in entries if e.key in only]
    from l2dynamics.studies.registry import get_study

    local = check_study_executor(executor, address, workers,
                                 [(e.key, get_study(e.study)) for e in entries], refuse=False)
    if local:
        log(f"--executor ray: {', '.join(local)} train on this machine (their runs are not "
            "Ray tasks)")
    if data_dir is None and any(entry_reads_user_files(e) for e in entries):
        raise ConfigError(f"the {suite} suite needs --data-dir (MNIST and CIFAR-10 files); "
                          "its Fashion-MNIST studies run without it (--only KEY)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(store) if store is not None else out / "runs.sqlite"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = Context(out, store_path, suite=suite, workers=workers, executor=executor,
                  address=address, data_dir=Path(data_dir) if data_dir else None,
                  steps_scale=steps_scale, subset=subset, fast=fast, log=log)
    command = command or f"l2dynamics reproduce --suite {suite} --out {out}"
    records, start = [], time.perf_counter()

    for k, entry in enumerate(entries, 1):
        log(f"== study {k}/{len(entries)}, {entry.key}: "
            f"{entry.title or get_study(entry.study).title} "
            f"({time.perf_counter() - start:.0f} s elapsed)")
        record = run_entry(entry, ctx, command, spec.changelog)
        log(f"   {entry.key}: {record['status']} in {record['wall_seconds']:.0f} s")
        records.append(record)
    summary = {"suite": suite, "created": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": machine(), "wall_seconds": time.perf_counter() - start,
               "command": command, "versions": versions(), "studies": records,
               "changelog": spec.changelog, "runs": store_runs(store_path)}
    render_report(summary, out)
    return summary


def check_study_executor(executor: str, address: str | None, workers: int | None,
                         studies: Sequence[tuple[str, Any]], *, refuse: bool = True) -> list[str]:
    """Check the executor options before anything runs (``check_executor`` of
    :mod:`l2dynamics.sweep`: Ray installed, something listening at `address`). With ``"ray"``,
    the keys
    of the (key, study) pairs whose runs cannot be Ray tasks: refused when `refuse`, else
    returned (they train on this machine)."""
    from l2dynamics.sweep import check_executor

    check_executor(executor, workers=workers, address=address)
    if executor != "ray":
        return []
    local = [key for key, study in studies if not study.distributed]
    if local and refuse:
        from l2dynamics.studies.registry import STUDIES, get_study

        able = sorted(k for k in STUDIES if get_study(k).distributed)
        raise ConfigError(f"{', '.join(local)} trains on this machine only: its runs are not "
                          f"Ray tasks; --executor ray applies to the studies {', '.join(able)}")
    return local


def store_runs(store: Path) -> dict[str, Any]:
    """Run counts by status in `store`, and every run that did not finish cleanly (diverged:
    with the step and cause; failed: with the error), for the report's "Runs" section."""
    from l2dynamics.store import RunStore

    if not Path(store).is_file():
        return {"counts": {}, "problems": []}
    counts: dict[str, int] = {}
    problems = []
    with RunStore(store) as st:
        for rec in st.list_runs():
            status = rec["status"]
            counts[status] = counts.get(status, 0) + 1
            if status not in ("diverged", "failed"):
                continue
            cfg = rec.get("config") or {}
            problems.append({
                "id": rec["id"], "status": status, "name": rec.get("name"),
                "optimizer": cfg.get("optimizer"), "lr": cfg.get("lr"), "lam": cfg.get("lam"),
                "seed": cfg.get("seed"), "step": rec.get("diverged_step"),
                "cause": (rec.get("diverged_cause") if status == "diverged"
                          else str(rec.get("error") or "")[:300])})
    return {"counts": counts, "problems": problems}
