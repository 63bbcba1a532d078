"""t*, c = λ·t* and c·η = λ·Φ(t*) from stored runs: seed intervals, the under-fitting guard,
the budget-independence check, fits and verdicts.

Per run: t* by each estimator of :mod:`l2dynamics.analysis.peak` (in steps), the peak test
accuracy, whether training accuracy ever reached the over-parameterization threshold,
c = λ·t* (steps) and c·η = λ·Φ(t*) (:func:`c_eta_of`, the one definition). Runs that never fit
their training data are outside the paper's regime: they stay in the tables, flagged, and are
excluded from the fits.

**Budget independence** (:mod:`l2dynamics.analysis.budget`): with budgets ∝ 1/λ an estimate
that sits at a fixed fraction of each run's budget scales as 1/λ by construction, so each run's
t* is re-estimated on the run cut to fractions of its budget, and a t* that moves with the cut
is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.analysis.budget import (
    BUDGET_TOLERANCE,
    TRUNCATIONS,
    budget_ratios,
    ratio_column,
)
from l2dynamics.analysis.intervals import seed_interval
from l2dynamics.analysis.peak import (
    ESTIMATORS,
    estimate_peak,
    reaches_train_accuracy,
    smooth_log_time,
)
from l2dynamics.analysis.tstar_verdicts import tstar_claims, tstar_fits, tstar_verdict
from l2dynamics.analysis.verdicts import test_noise_se
from l2dynamics.store import RunStore


def c_eta_of(lam: Any, phys_time: Any, momentum: Any = 0.0, optimizer: Any = "sgd") -> Any:
    """c·η = λ·Φ(t*), the one definition of the paper's constant in time units.

    Φ(t*) = (physical time after t* updates, Σ η_s with the schedule, as the store keeps it in
    ``phys_time``) / (1 − μ) for SGD with heavy-ball or Nesterov momentum μ (its long-time step
    is η/(1 − μ)); Φ = physical time for Adam/AdamW. At constant η without momentum this is
    λ·η·t*. Scalars or arrays (element-wise)."""
    sgd = np.asarray(optimizer) == "sgd"
    divisor = np.where(sgd, 1.0 - np.asarray(momentum, float), 1.0)
    out = np.asarray(lam, float) * np.asarray(phys_time, float) / divisor
    return float(out) if out.ndim == 0 else out


def tstar_table(store: RunStore, run_ids: Sequence[int] | None = None, *,
                train_threshold: float = 0.99, window: float = 0.2,
                delta: float = 0.005, min_drop: float = 0.01,
                truncations: Sequence[float] = TRUNCATIONS,
                budget_tolerance: float = BUDGET_TOLERANCE) -> pd.DataFrame:
    """One row per stored classification run (finished or diverged).

    Each estimator has its own censoring flag ``censored_<estimator>`` (no usable t* inside the
    budget; excluded from fits): for ``raw`` and ``smoothed`` (a *peak*), when it lies within
    one window of the last evaluation or the smoothed accuracy never falls by `min_drop` after
    it; for ``onset`` (the start of a *plateau*, which need not fall afterwards), when it lies
    within one window of the last evaluation. ``peak_at_end`` is ``censored_smoothed``.

    Per estimator also ``c_<est>`` = λ·t*, ``c_eta_<est>`` = λ·Φ(t*) (:func:`c_eta_of`), the
    t* of the run cut to each fraction f of `truncations` (``tstar_<est>_f50``, …), the ratio
    ``budget_ratio_<est>_f50`` = t*_f/t* where the check applies (the cut run holds t* with its
    whole smoothing window: t*·10^(window/2) ≤ f·T, T the last evaluated step; NaN elsewhere),
    ``budget_checks_<est>`` (the fractions where it applied; 0: t* too close to the end to
    check) and ``budget_dependent_<est>`` (the run's t* moved by more than `budget_tolerance`,
    relative, at one of them; :mod:`l2dynamics.analysis.budget`). The CIs of the fits reflect
    seeds and scatter, not the clock's resolution."""
    records = [r for r in store.list_runs(ids=run_ids) if r["status"] in ("finished", "diverged")]
    if not records:
        return pd.DataFrame()
    series = store.series([r["id"] for r in records], ["test_acc", "train_acc", "test_n"])
    by_run = dict(tuple(series.groupby("run_id"))) if not series.empty else {}
    opts = {"train_threshold": train_threshold, "window": window, "delta": delta,
            "min_drop": min_drop, "truncations": tuple(truncations),
            "budget_tolerance": budget_tolerance}
    rows = [row for rec in records
            if (row := _run_row(rec, by_run.get(rec["id"]), **opts)) is not None]
    return pd.DataFrame(rows)


def _run_row(rec: dict[str, Any], mine: pd.DataFrame | None, *, train_threshold: float,
             window: float, delta: float, min_drop: float, truncations: tuple[float, ...],
             budget_tolerance: float) -> dict[str, Any] | None:
    if mine is None:
        return None
    acc = mine[mine["name"] == "test_acc"].sort_values("step")
    if acc.empty:
        return None
    cfg = rec["config"]
    lam, lr = cfg["lam"], cfg["lr"]
    momentum, optimizer = cfg.get("momentum", 0.0), cfg.get("optimizer", "sgd")
    steps, values = acc["step"].to_numpy(float), acc["value"].to_numpy(float)
    # phys_time (Σ η) is stored with every metric row; a store without it means constant η
    phys = acc["phys_time"].to_numpy(float) if "phys_time" in acc else lr * steps
    est = estimate_peak(steps, values, window=window, delta=delta)
    train = mine.loc[mine["name"] == "train_acc", "value"]
    row = {"run_id": rec["id"], "status": rec["status"], "lam": lam, "lr": lr,
           "momentum": momentum, "optimizer": optimizer, "seed": cfg["seed"],
           "steps": cfg["steps"], "last_step": float(steps.max()),
           "peak_acc": est.peak_raw, "peak_acc_smoothed": est.peak_smoothed,
           # what the run ends with; a diverged run is worth nothing to its user
           "final_acc": float(values[-1]) if rec["status"] == "finished" else 0.0,
           "fits_train": reaches_train_accuracy(train, train_threshold),
           "test_noise_se": test_noise_se(est.peak_raw, _test_size_at(
               mine, est.get("raw"), (rec.get("summary") or {}).get("n_test")
               or cfg.get("n_test")))}
    cuts = {f: _truncated(steps, values, f, window, delta) for f in truncations}
    for name in ESTIMATORS:
        t = est.get(name)
        row[f"censored_{name}"] = censored_tstar(steps, values, t, window=window,
                                                 min_drop=None if name == "onset" else min_drop)
        row[f"tstar_{name}"] = t
        row[f"c_{name}"] = lam * t
        phys_t = float(np.interp(t, steps, phys)) if math.isfinite(t) else math.nan
        row[f"c_eta_{name}"] = c_eta_of(lam, phys_t, momentum, optimizer)
        cut_t = {f: cut.get(name) for f, cut in cuts.items()}
        row.update({f"tstar_{name}_f{round(100 * f)}": v for f, v in cut_t.items()})
        ratios = budget_ratios(t, cut_t, float(steps.max()), window=window)
        row.update({ratio_column(name, f): r for f, r in ratios.items()})
        checked = [r for r in ratios.values() if math.isfinite(r)]
        row[f"budget_checks_{name}"] = len(checked)
        row[f"budget_dependent_{name}"] = any(abs(r - 1) > budget_tolerance for r in checked)
    row["peak_at_end"] = row["censored_smoothed"]
    return row


def _test_size_at(mine: pd.DataFrame, step: float, whole: Any) -> Any:
    """How many test examples the point at `step` was measured on: its ``test_n`` metric (an
    intermediate point of an evaluation budget uses a fixed subset), else the whole test set
    `whole` (runs stored before ``test_n`` existed)."""
    sizes = mine[mine["name"] == "test_n"]
    if sizes.empty or not math.isfinite(step):
        return whole
    at = sizes.loc[(sizes["step"] - step).abs().idxmin(), "value"]
    return int(at) if math.isfinite(at) and at > 0 else whole


def _truncated(steps: np.ndarray, acc: np.ndarray, fraction: float, window: float,
               delta: float):
    keep = steps <= fraction * steps.max()
    return estimate_peak(steps[keep], acc[keep], window=window, delta=delta)


def censored_tstar(steps: np.ndarray, acc: np.ndarray, tstar: float, *, window: float,
                   min_drop: float | None) -> bool:
    """No usable t* inside the budget: it lies within one window of the last evaluation, or
    (when `min_drop` is given, for peak estimators) the smoothed accuracy never falls by
    `min_drop` after it (a rising or flat curve, whose argmax is noise)."""
    if not math.isfinite(tstar) or tstar >= steps.max() * 10 ** (-window):
        return True
    if min_drop is None:
        return False
    smooth = smooth_log_time(steps, acc, window)
    after = smooth[steps >= tstar]
    return not bool(np.nanmin(after) <= np.nanmax(after) - min_drop)


def tstar_summary(table: pd.DataFrame, *, estimator: str = "smoothed",
                  by: Sequence[str] = ("lr", "lam"), level: float = 0.95) -> pd.DataFrame:
    """Per group (η, λ): the seed mean and interval of t*, c = λ·t*, c·η = λ·Φ(t*) and the peak
    accuracy (:func:`~l2dynamics.analysis.intervals.seed_interval`: a `level` t-interval over
    ≥ 3 seeds, the seed range over 2), the interval's method (``interval``) and its number of
    seeds (``seeds``), and the test-set noise of one accuracy (``test_noise_se``)."""
    rows = []
    for key, group in table.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        for out, column in (("tstar", f"tstar_{estimator}"), ("c", f"c_{estimator}"),
                            ("c_eta", f"c_eta_{estimator}"), ("peak_acc", "peak_acc")):
            ci = seed_interval(group.get(column, []), level)
            row.update({out: ci.mean, f"{out}_low": ci.low, f"{out}_high": ci.high})
            if out == "tstar":
                row.update({"seeds": ci.n, "interval": ci.label().rsplit(",", 1)[0]})
        row.update({"runs": len(group),
                    "test_noise_se": float(group["test_noise_se"].mean()),
                    "all_fit_train": bool(group["fits_train"].all()),
                    "any_peak_at_end": bool(group[f"censored_{estimator}"].any())})
        rows.append(row)
    return pd.DataFrame(rows)


def seed_curves(store: RunStore, table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """`metric` per (η, λ, step), averaged over the seeds of `table`'s runs: mean, standard
    error and the number of seeds, with the time axes step, λ·step, λ·η·step (the paper's
    collapse variables) and λ·Φ (``lam_phi``, :func:`c_eta_of` at each step: schedule and
    momentum included). Runs of one (η, λ) share their evaluation clock (same budget)."""
    if table.empty:
        return pd.DataFrame()
    series = store.series(table["run_id"].tolist(), [metric])
    extra = [c for c in ("momentum", "optimizer") if c in table]
    series = series.merge(table[["run_id", "lr", "lam", "seed", *extra]], on="run_id")
    if "phys_time" in series:
        series["lam_phi"] = c_eta_of(series["lam"].to_numpy(), series["phys_time"].to_numpy(),
                                     series.get("momentum", 0.0), series.get("optimizer", "sgd"))
    grouped = series.groupby(["lr", "lam", "step"])
    out = grouped["value"].agg(mean="mean", std="std", seeds="count").reset_index()
    out["sem"] = out["std"].fillna(0.0) / np.sqrt(out["seeds"])
    out["lam_step"] = out["lam"] * out["step"]
    out["lam_lr_step"] = out["lam"] * out["lr"] * out["step"]
    if "lam_phi" in series:
        out["lam_phi"] = grouped["lam_phi"].mean().to_numpy()
    return out.drop(columns="std")


__all__ = ["BUDGET_TOLERANCE", "TRUNCATIONS", "c_eta_of", "censored_tstar", "seed_curves",
           "tstar_claims", "tstar_fits", "tstar_summary", "tstar_table", "tstar_verdict"]
