"""The regime map: in which cells of (training-set size, width, loss) does test accuracy peak
at t* ∝ 1/λ, and how much does L2 buy there?

Per cell, from the t* table of its runs (:func:`~l2dynamics.analysis.tstar.tstar_table`), the
runs of the *fixed-budget arm* (every λ trains the same number of steps, so no budget ∝ 1/λ can
shape t*) at the main learning rate give:

- **shape**: "peak" when the smoothed test accuracy falls by at least ``min_drop`` after its
  maximum (not censored) in at least half of the λ > 0 runs, else "plateau";
- **fits**: the share of λ > 0 runs whose training accuracy reached the threshold. It is a
  measured axis of the map, not a filter: the slope below uses every run with a usable t*;
- **slope**: t* ∝ λ^p fitted over every λ > 0 run with a usable t* (95 % t-interval over the
  runs), judged by :func:`~l2dynamics.analysis.verdicts.slope_claim` against −1 with the
  package's margin [−1.25, −0.80];
- **budget check**: the same (λ, η, seed) trained in the *inverse arm* (budget ∝ 1/(ηλ)):
  the median ratio t*_inverse / t*_fixed over the runs usable in both. Outside
  [1/``BUDGET_RATIO``, ``BUDGET_RATIO``] the budget moved t*, and a "holds" becomes
  "undetermined";
- **c·η** = λ·Φ(t*) (seed mean with its interval) at the main learning rate, and whether it
  is η-independent: per λ, the log of the ratio of its geometric means over seeds at the
  second and the main η; their mean over λ with a t-interval (n = the λ usable at both) inside
  ±log(``C_ETA_RATIO``) (equivalence test);
- **gain**: the best λ > 0 against λ = 0 on final test accuracy
  (:func:`~l2dynamics.analysis.l2_effect.l2_effect_claim`: Bonferroni-adjusted Welch interval).

The cell's verdict on "t* ∝ 1/λ" is the slope's, downgraded by the budget check.
:func:`regime_boundary` states where the verdicts change along parameters per training example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.analysis.fits import fit_power_law
from l2dynamics.analysis.intervals import seed_interval
from l2dynamics.analysis.l2_effect import best_against_zero, groups_by_lam, l2_effect_claim
from l2dynamics.analysis.verdicts import equivalence_claim, slope_claim

NETWORK_NAMES = {"fc": "FC", "cnn": "CNN", "cnn+bn": "CNN + BN"}  # the map's networks, in order
BUDGET_RATIO = 1.25  # t* of the inverse arm within ×1.25 of the fixed arm's: budget-independent
C_ETA_RATIO = 1.5  # c·η at two learning rates within ×1.5: η-independent
PEAK_SHARE = 0.5  # a cell "peaks" when at least this share of its λ > 0 runs does


def _lr_rows(table: pd.DataFrame, lr: float) -> pd.DataFrame:
    return table[np.isclose(table["lr"].to_numpy(float), lr)]


def cell_summary(table: pd.DataFrame, *, fixed_steps: int, lr: float,
                 second_lr: float | None = None, estimator: str = "smoothed") -> dict[str, Any]:
    """The regime quantities of one cell (module docstring), as a flat dict with the claims'
    texts: ``shape``, ``peak_share``, ``fit_share``, ``slope``/``slope_low``/``slope_high``/
    ``slope_runs``/``slope_verdict``/``slope_text``, ``budget_ratio``/``budget_runs``/
    ``budget_ok``, ``verdict`` (t* ∝ 1/λ after the budget check), ``c_eta``/``c_eta_low``/
    ``c_eta_high``/``c_eta_method`` (main η), ``c_eta_ratio``/``c_eta_verdict``/
    ``c_eta_text``, ``gain``/``gain_low``/``gain_high``/``gain_verdict``/``gain_text``."""
    t_col, cens = f"tstar_{estimator}", f"censored_{estimator}"
    fixed = table[table["steps"] == fixed_steps]
    main = _lr_rows(fixed, lr)
    positive = main[main["lam"] > 0]
    out: dict[str, Any] = {"runs": int(len(table)), "positive_runs": int(len(positive))}
    peaked = (~positive["censored_smoothed"].astype(bool)) if len(positive) else pd.Series([])
    out["peak_share"] = float(peaked.mean()) if len(peaked) else math.nan
    out["shape"] = ("peak" if out["peak_share"] >= PEAK_SHARE else "plateau"
                    if math.isfinite(out["peak_share"]) else "no runs")
    out["fit_share"] = (float(positive["fits_train"].astype(bool).mean()) if len(positive)
                        else math.nan)
    usable = positive[~positive[cens].astype(bool)]
    fit = fit_power_law(usable["lam"], usable[t_col])
    claim = slope_claim("t* ∝ 1/λ", fit, -1.0)
    out.update(slope=fit["slope"], slope_low=fit["ci_low"], slope_high=fit["ci_high"],
               slope_runs=int(fit["points"]), slope_verdict=claim.verdict,
               slope_text=claim.measured + (f"; {claim.ci}" if claim.ci else ""))
    out.update(_budget_check(table, fixed_steps, lr, t_col, cens))
    verdict = claim.verdict
    if out["budget_ok"] is False and verdict in ("holds", "consistent"):
        verdict = "undetermined"
    out["verdict"] = verdict
    ci = seed_interval(usable[f"c_eta_{estimator}"])
    out.update(c_eta=ci.mean, c_eta_low=ci.low, c_eta_high=ci.high,
               c_eta_method=f"{ci.method}, n = {ci.n}")
    out.update(_c_eta_check(fixed, lr, second_lr, estimator))
    gain = l2_effect_claim(groups_by_lam(main, "final_acc"))
    diff = _gain_interval(main)
    out.update(gain=diff[0], gain_low=diff[1], gain_high=diff[2], gain_verdict=gain.verdict,
               gain_text=gain.measured)
    return out


def _budget_check(table: pd.DataFrame, fixed_steps: int, lr: float, t_col: str,
                  cens: str) -> dict[str, Any]:
    main = _lr_rows(table[table["lam"] > 0], lr)
    fixed = main[(main["steps"] == fixed_steps) & ~main[cens].astype(bool)]
    other = main[(main["steps"] != fixed_steps) & ~main[cens].astype(bool)]
    pairs = fixed.merge(other, on=["lam", "seed"], suffixes=("_fixed", "_inverse"))
    ratios = (pairs[f"{t_col}_inverse"] / pairs[f"{t_col}_fixed"]).to_numpy(float)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    if not len(ratios):
        return {"budget_ratio": math.nan, "budget_runs": 0, "budget_ok": None}
    median = float(np.median(ratios))
    return {"budget_ratio": median, "budget_runs": int(len(ratios)),
            "budget_ok": bool(1 / BUDGET_RATIO <= median <= BUDGET_RATIO)}


def _c_eta_check(fixed: pd.DataFrame, lr: float, second_lr: float | None,
                 estimator: str) -> dict[str, Any]:
    none = {"c_eta_ratio": math.nan, "c_eta_verdict": "undetermined",
            "c_eta_text": "no second learning rate"}
    if second_lr is None:
        return none
    cens, col = f"censored_{estimator}", f"c_eta_{estimator}"

    def log_means(at: float) -> pd.Series:
        rows = _lr_rows(fixed[fixed["lam"] > 0], at)
        rows = rows[~rows[cens].astype(bool) & (rows[col] > 0)]
        return np.log(rows[col].astype(float)).groupby(rows["lam"]).mean()

    paired = pd.concat([log_means(second_lr), log_means(lr)], axis=1, join="inner").dropna()
    diff = seed_interval(paired.iloc[:, 0] - paired.iloc[:, 1])
    claim = equivalence_claim(f"c·η independent of η ({second_lr:g} vs {lr:g})", diff.mean,
                              diff.low, diff.high, math.log(C_ETA_RATIO),
                              what="log(c·η at the second η / at the main η)",
                              method=f"95 % {diff.method} over λ paired by λ, n = {diff.n} λ")
    return {"c_eta_ratio": math.exp(diff.mean) if math.isfinite(diff.mean) else math.nan,
            "c_eta_verdict": claim.verdict,
            "c_eta_text": claim.measured + (f"; {claim.ci}" if claim.ci else "")}


def _gain_interval(main: pd.DataFrame) -> tuple[float, float, float]:
    """The best λ > 0's final accuracy minus λ = 0's, with its Bonferroni-adjusted Welch
    interval (:func:`~l2dynamics.analysis.l2_effect.best_against_zero`)."""
    found = best_against_zero(groups_by_lam(main, "final_acc"))
    if found is None:
        return math.nan, math.nan, math.nan
    ci = found[1]
    return ci.mean, ci.low, ci.high


def parameters_per_example(parameters: int, n_train: int) -> float:
    """The over-parameterization variable of the map: trainable parameters per training
    example."""
    return parameters / n_train


def regime_boundary(cells: pd.DataFrame, *, by: str = "params_per_example",
                    verdict: str = "verdict") -> dict[str, Any]:
    """Where the verdict on t* ∝ 1/λ changes along `by` (one row per cell with `by` and
    `verdict`): the smallest value among cells where it holds, the largest among cells where
    it does not, and whether they separate (every "holds" above every "does not hold"). Cells
    with other verdicts ("consistent", "undetermined") are counted, not placed."""
    holds = cells.loc[cells[verdict] == "holds", by].to_numpy(float)
    fails = cells.loc[cells[verdict] == "does not hold", by].to_numpy(float)
    consistent = int((cells[verdict] == "consistent").sum())
    out = {"holds": int(len(holds)), "does_not_hold": int(len(fails)), "consistent": consistent,
           "other": int(len(cells) - len(holds) - len(fails) - consistent),
           "lowest_holding": float(holds.min()) if len(holds) else math.nan,
           "highest_failing": float(fails.max()) if len(fails) else math.nan}
    out["separates"] = bool(len(holds) and len(fails)
                            and out["lowest_holding"] > out["highest_failing"])
    return out


def map_verdict(boundary: dict[str, Any]) -> str:
    """The verdict on "t* ∝ 1/λ holds in at least one cell of the map": "holds" when a cell
    holds, "does not hold" only when every cell does not, else "consistent" when a cell is
    consistent with it, else "undetermined"."""
    total = (boundary["holds"] + boundary["does_not_hold"] + boundary.get("consistent", 0)
             + boundary["other"])
    if boundary["holds"]:
        return "holds"
    if total and boundary["does_not_hold"] == total:
        return "does not hold"
    return "consistent" if boundary.get("consistent") else "undetermined"


def boundary_sentence(boundary: dict[str, Any], by: str = "parameters per training example"
                      ) -> str:
    """The boundary in words, as measured."""
    h, f = boundary["holds"], boundary["does_not_hold"]
    parts = []
    if boundary.get("consistent"):
        parts.append(f"{boundary['consistent']} cells are consistent with it but too imprecise "
                     "to confirm it")
    if boundary["other"]:
        parts.append(f"{boundary['other']} cells could not be decided")
    rest = "; " + "; ".join(parts) if parts else ""
    if not h:
        return (f"t* ∝ 1/λ held in no cell ({f} cells where it did not{rest}): no cell within "
                "reach of this grid shows it.")
    if not f:
        return f"t* ∝ 1/λ held in {h} cells and failed in none{rest}."
    if boundary["separates"]:
        return (f"t* ∝ 1/λ held in the {h} cells with at least "
                f"{boundary['lowest_holding']:.3g} {by} and in none of the {f} cells with at "
                f"most {boundary['highest_failing']:.3g}{rest}.")
    return (f"t* ∝ 1/λ held in {h} cells and not in {f}, and {by} does not separate them "
            f"(held from {boundary['lowest_holding']:.3g}, failed up to "
            f"{boundary['highest_failing']:.3g}){rest}.")


def cells_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-cell summaries as a table sorted by network (FC, CNN, CNN + BN), loss, width and
    training-set size."""
    frame = pd.DataFrame(list(rows))
    keys = [k for k in ("network", "loss", "width", "n_train") if k in frame]
    order = {name: k for k, name in enumerate(NETWORK_NAMES)}
    return (frame.sort_values(keys, key=lambda col: col.map(lambda v: order.get(v, len(order)))
                              if col.name == "network" else col).reset_index(drop=True)
            if keys else frame)


__all__ = ["BUDGET_RATIO", "C_ETA_RATIO", "NETWORK_NAMES", "PEAK_SHARE", "boundary_sentence",
           "cell_summary", "cells_frame", "map_verdict", "parameters_per_example",
           "regime_boundary"]
