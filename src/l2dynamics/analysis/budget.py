"""Does a run's t* come from the data or from its budget?

With budgets ∝ 1/λ (the paper's protocol) any estimate that sits at a fixed fraction of its
run's budget scales as 1/λ by construction: a λ-independent curve that creeps up until the end
gives a plateau onset at ≈ 0.56·T in every run, and so a slope ≈ −1. The check: re-estimate t*
on each run cut to fractions f of its budget (:data:`TRUNCATIONS`). Where the cut run still
holds t* with its whole smoothing window (t*·10^(window/2) ≤ f·T), the smoothed curve up to t*
is the same in both runs, so a real peak or plateau onset is found again (ratio t*_f/t* = 1),
while a budget artefact moves with the cut (ratio ≈ f).

One run's ratio is noisy: on a flat noisy plateau the onset depends on the maximum of the
smoothed curve, which a shorter run lowers, so about one run in ten of a genuine 1/λ plateau
moves by > 20 % at f = 0.5. A *fit* is therefore judged budget-dependent per λ (all seeds of one
λ share the budget): when the median ratio of that λ's runs differs from 1 by more than the
tolerance at some f (:func:`budget_dependent_lams`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Fractions of a run's budget (its last evaluated step) at which t* is re-estimated.
TRUNCATIONS = (0.5, 0.75)
# t* moves with its budget when a cut run's t* differs from the full run's by more than this
# (relative). 20 %: above one step of a 20-per-decade evaluation clock (12 %), below the 25 %
# (f = 0.75) and 50 % (f = 0.5) by which a t* proportional to the budget moves.
BUDGET_TOLERANCE = 0.2


def budget_ratios(tstar: float, cut: dict[float, float], last_step: float, *,
                  window: float) -> dict[float, float]:
    """t*_f / t* at each fraction f of `cut` (f → t* of the run cut at f·`last_step`) where
    the check applies (the cut run holds t* with its whole smoothing window:
    t*·10^(window/2) ≤ f·last_step), NaN elsewhere. A cut run without a t* gives 0."""
    out = {}
    for f, t_f in cut.items():
        applies = math.isfinite(tstar) and 0 < tstar * 10 ** (window / 2) <= f * last_step
        out[f] = (t_f / tstar if math.isfinite(t_f) else 0.0) if applies else math.nan
    return out


def budget_check(tstar: float, cut: dict[float, float], last_step: float, *, window: float,
                 tolerance: float = BUDGET_TOLERANCE) -> tuple[int, bool]:
    """(number of fractions checked, moved) for one run: moved when |t*_f/t* − 1| >
    `tolerance` at a fraction where the check applies (:func:`budget_ratios`)."""
    ratios = [r for r in budget_ratios(tstar, cut, last_step, window=window).values()
              if math.isfinite(r)]
    return len(ratios), any(abs(r - 1.0) > tolerance for r in ratios)


def ratio_column(estimator: str, fraction: float) -> str:
    return f"budget_ratio_{estimator}_f{round(100 * fraction)}"


def budget_dependent_lams(runs: pd.DataFrame, estimator: str,
                          tolerance: float = BUDGET_TOLERANCE) -> list[float]:
    """The λ of `runs` whose median t*_f/t* (over their runs where the check applies) differs
    from 1 by more than `tolerance` at some fraction f: their t* moves with the budget."""
    columns = [c for c in runs.columns if c.startswith(f"budget_ratio_{estimator}_f")]
    if not columns:
        return []
    medians = runs.groupby("lam")[columns].median()  # NaNs (not checked) are skipped
    moved = (medians - 1.0).abs().gt(tolerance).any(axis=1)
    return [float(lam) for lam in np.sort(medians.index[moved.to_numpy()].to_numpy(float))]
