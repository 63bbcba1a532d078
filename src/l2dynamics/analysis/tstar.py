"""t* and c = λ·t* from stored runs, with seed statistics, the under-fitting guard and fits.

Per run: t* by each estimator of :mod:`l2dynamics.analysis.peak` (in steps), the peak test
accuracy, whether training accuracy ever reached the over-parameterization threshold, and
c = λ·t* (steps) and c·η = λ·η·t* (the released code's physical units). Runs that never fit
their training data are outside the paper's regime: they stay in the tables, flagged, and are
excluded from the fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from l2dynamics.analysis.fits import fit_power_law, slope_verdict
from l2dynamics.analysis.peak import (
    bootstrap_ci,
    estimate_peak,
    reaches_train_accuracy,
    smooth_log_time,
)
from l2dynamics.analysis.verdicts import test_noise_se
from l2dynamics.store import RunStore


def tstar_table(store: RunStore, run_ids: Sequence[int] | None = None, *,
                train_threshold: float = 0.99, window: float = 0.2,
                delta: float = 0.005, min_drop: float = 0.01) -> pd.DataFrame:
    """One row per stored classification run (finished or diverged).

    Each estimator has its own censoring flag ``censored_<estimator>`` (no usable t* inside the
    budget; excluded from fits): for ``raw`` and ``smoothed`` (a *peak*), when it lies within
    one window of the last evaluation or the smoothed accuracy never falls by `min_drop` after
    it; for ``onset`` (the start of a *plateau*, which need not fall afterwards), when it lies
    within one window of the last evaluation, i.e. less than one window of plateau was seen.
    ``peak_at_end`` is ``censored_smoothed``. The CIs of the fits reflect seeds and scatter,
    not the clock's resolution: use an ``eval_per_decade`` fine enough for the precision
    wanted."""
    records = [r for r in store.list_runs(ids=run_ids) if r["status"] in ("finished", "diverged")]
    if not records:
        return pd.DataFrame()
    series = store.series([r["id"] for r in records], ["test_acc", "train_acc"])
    rows = []
    for rec in records:
        cfg = rec["config"]
        mine = series[series["run_id"] == rec["id"]]
        acc = mine[mine["name"] == "test_acc"].sort_values("step")
        train = mine[mine["name"] == "train_acc"]
        if acc.empty:
            continue
        est = estimate_peak(acc["step"], acc["value"], window=window, delta=delta)
        lam, lr = cfg["lam"], cfg["lr"]
        row = {"run_id": rec["id"], "status": rec["status"], "lam": lam, "lr": lr,
               "momentum": cfg["momentum"], "seed": cfg["seed"], "steps": cfg["steps"],
               "peak_acc": est.peak_raw, "peak_acc_smoothed": est.peak_smoothed,
               "fits_train": reaches_train_accuracy(train["value"], train_threshold),
               "test_noise_se": test_noise_se(est.peak_raw, (rec.get("summary") or {}).get(
                   "n_test") or cfg.get("n_test"))}
        steps_arr, acc_arr = acc["step"].to_numpy(float), acc["value"].to_numpy(float)
        for name in ("raw", "smoothed", "onset"):
            t = est.get(name)
            row[f"censored_{name}"] = censored_tstar(steps_arr, acc_arr, t, window=window,
                                                min_drop=None if name == "onset" else min_drop)
            row[f"tstar_{name}"] = t
            row[f"c_{name}"] = lam * t
            row[f"c_eta_{name}"] = lam * lr * t
        row["peak_at_end"] = row["censored_smoothed"]
        rows.append(row)
    return pd.DataFrame(rows)


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
                  by: Sequence[str] = ("lr", "lam"), seed: int = 0) -> pd.DataFrame:
    """Mean and 95 % bootstrap CI over seeds of t*, c = λt* and peak accuracy, per group, and
    the test-set noise of one accuracy (binomial SE, ``test_noise_se``) to compare them with."""
    rows = []
    for key, group in table.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        t, t_lo, t_hi = bootstrap_ci(group[f"tstar_{estimator}"], seed=seed)
        c, c_lo, c_hi = bootstrap_ci(group[f"c_{estimator}"], seed=seed)
        a, a_lo, a_hi = bootstrap_ci(group["peak_acc"], seed=seed)
        rows.append({**dict(zip(by, key, strict=True)), "seeds": len(group),
                     "tstar": t, "tstar_low": t_lo, "tstar_high": t_hi,
                     "c": c, "c_low": c_lo, "c_high": c_hi,
                     "peak_acc": a, "peak_acc_low": a_lo, "peak_acc_high": a_hi,
                     "test_noise_se": float(group["test_noise_se"].mean()),
                     "all_fit_train": bool(group["fits_train"].all()),
                     "any_peak_at_end": bool(group[f"censored_{estimator}"].any())})
    return pd.DataFrame(rows)


def tstar_fits(table: pd.DataFrame, *, estimator: str = "smoothed") -> pd.DataFrame:
    """Slope of log t* vs log λ per learning rate, over runs with λ > 0 that fit their
    training data and have a usable peak (not censored: see ``censored_tstar``), its
    :func:`~l2dynamics.analysis.fits.slope_verdict`, and c·η = λ·η·t* (mean and bootstrap CI over
    the same runs; a constant only where the slope is −1)."""
    rows = []
    for lr, group in table.groupby("lr"):
        censored = group[f"censored_{estimator}"]
        usable = group[(group["lam"] > 0) & group["fits_train"] & ~censored]
        fit = fit_power_law(usable["lam"], usable[f"tstar_{estimator}"])
        rows.append({"lr": lr, "runs": len(group), "used": len(usable),
                     "excluded_underfit": int((~group["fits_train"] & (group["lam"] > 0)).sum()),
                     "excluded_censored": int((censored & group["fits_train"]
                                               & (group["lam"] > 0)).sum()),
                     **fit,
                     "contains_minus_one": bool(fit["ci_low"] <= -1.0 <= fit["ci_high"])
                     if math.isfinite(fit["slope"]) else False,
                     "verdict": slope_verdict(fit),
                     **dict(zip(("c_eta", "c_eta_low", "c_eta_high"),
                                bootstrap_ci(usable[f"c_eta_{estimator}"]), strict=True))})
    return pd.DataFrame(rows)


def tstar_verdict(table: pd.DataFrame, *, estimator: str = "smoothed") -> pd.DataFrame:
    """The paper's three claims against this data, with the numbers."""
    fits = tstar_fits(table, estimator=estimator)
    summary = tstar_summary(table, estimator=estimator)
    rows = []
    for fit in fits.itertuples():
        rows.append({"claim": f"t* ∝ 1/λ (η={fit.lr:g})",
                     "measured": f"slope {fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}], "
                                 f"{fit.used} runs; c·η = λ·η·t* = {fit.c_eta:.3g} "
                                 f"[{fit.c_eta_low:.3g}, {fit.c_eta_high:.3g}]",
                     "holds": {"holds": "yes", "undetermined": "undetermined"}.get(
                         fit.verdict, f"no ({fit.verdict})")})
    for lr, group in summary.groupby("lr"):
        zero = group[group["lam"] == 0]
        positive = group[(group["lam"] > 0) & group["all_fit_train"]]
        if not zero.empty and not positive.empty:
            best = positive.loc[positive["peak_acc"].idxmax()]
            gain = best["peak_acc"] - zero["peak_acc"].iloc[0]
            separated = best["peak_acc_low"] > zero["peak_acc_high"].iloc[0]
            rows.append({"claim": f"some λ > 0 beats λ = 0 (η={lr:g})",
                         "measured": f"best λ={best['lam']:g}: {best['peak_acc']:.4f} vs "
                                     f"{zero['peak_acc'].iloc[0]:.4f} ({gain:+.4f})",
                         "holds": "yes" if separated else ("no" if gain <= 0 else
                                                           "within seed CIs")})
        # flatness is judged only where the peak was seen (censored runs had not peaked yet)
        peaked = positive[~positive["any_peak_at_end"]]
        small = peaked.nsmallest(max(2, len(peaked) // 2), "lam")
        if len(small) >= 2:
            spread = small["peak_acc"].max() - small["peak_acc"].min()
            ci = float(np.nanmax(small["peak_acc_high"] - small["peak_acc_low"]))
            rows.append({"claim": f"peak accuracy flat in small λ (η={lr:g})",
                         "measured": f"spread {spread:.4f} over λ ≤ {small['lam'].max():g} "
                                     f"(largest seed CI width {ci:.4f})",
                         "holds": "yes" if spread <= ci else "no"})
    return pd.DataFrame(rows)


def seed_curves(store: RunStore, table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """`metric` per (η, λ, step), averaged over the seeds of `table`'s runs: mean, standard
    error and the number of seeds, with the time axes step, λ·step and λ·η·step (the paper's
    collapse variables). Runs of one (η, λ) share their evaluation clock (same budget)."""
    if table.empty:
        return pd.DataFrame()
    series = store.series(table["run_id"].tolist(), [metric])
    series = series.merge(table[["run_id", "lr", "lam", "seed"]], on="run_id")
    grouped = series.groupby(["lr", "lam", "step"])["value"]
    out = grouped.agg(mean="mean", std="std", seeds="count").reset_index()
    out["sem"] = out["std"].fillna(0.0) / np.sqrt(out["seeds"])
    out["lam_step"] = out["lam"] * out["step"]
    out["lam_lr_step"] = out["lam"] * out["lr"] * out["step"]
    return out.drop(columns="std")
