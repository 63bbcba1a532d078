"""The t* study's fits and verdicts, from a runs table of :func:`analysis.tstar.tstar_table`.

- ``t* ∝ 1/λ``: the slope of log t* on log λ per learning rate (runs with λ > 0 that fit their
  training data and have an uncensored t*), judged with the equivalence margin
  :data:`~l2dynamics.analysis.verdicts.SLOPE_MARGIN`; "undetermined" when the t* of some λ
  moves with its budget (:func:`~l2dynamics.analysis.budget.budget_dependent_lams`).
- ``some λ > 0 beats λ = 0``: Welch t-interval of (best λ's seed-mean peak accuracy) − (λ = 0's),
  Bonferroni-adjusted for the pick of the best λ.
- ``peak accuracy flat in small λ``: an equivalence test of the change of the peak accuracy
  across the small-λ half of the grid (:data:`FLAT_MARGIN`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.analysis.budget import BUDGET_TOLERANCE, budget_dependent_lams
from l2dynamics.analysis.fits import fit_line, fit_power_law
from l2dynamics.analysis.intervals import seed_interval
from l2dynamics.analysis.peak import ESTIMATORS
from l2dynamics.analysis.verdicts import (
    SLOPE_MARGIN,
    Claim,
    equivalence_claim,
    slope_claim,
    superiority_claim,
)

# "Flat": the peak accuracy changes by less than 1 accuracy point across the small-λ half of the
# grid (the change of a linear fit on log λ over that range, with its 95 % t-interval). One point
# is twice the binomial noise of one accuracy near 0.9 on 4 000 test examples (0.005), and
# larger than the 0.4 % by which the paper's λ prediction says it lands from the tuned λ.
FLAT_MARGIN = 0.01


def _usable(group: pd.DataFrame, estimator: str) -> pd.DataFrame:
    return group[(group["lam"] > 0) & group["fits_train"] & ~group[f"censored_{estimator}"]]


def tstar_fits(table: pd.DataFrame, *, estimator: str = "smoothed",
               budget_tolerance: float = BUDGET_TOLERANCE) -> pd.DataFrame:
    """Per learning rate: the fit of log t* on log λ (``slope``, its 95 % t-interval
    ``ci_low``/``ci_high``, ``points``) over the usable runs (λ > 0, fit their training data,
    t* not censored), the counts ``runs``, ``used``, ``excluded_underfit``,
    ``excluded_censored``, ``budget_dependent`` (used runs whose own t* moved with the cut),
    ``budget_dependent_lams`` (λ whose median t* over seeds moved: the fit's criterion, see
    :mod:`l2dynamics.analysis.budget`) and ``budget_checked`` (used runs where the check
    applied), the ``verdict`` (one of ``VERDICTS``:
    :func:`~l2dynamics.analysis.verdicts.slope_rule` with margin ``margin_low``/``margin_high``,
    made "undetermined" when ``budget_dependent_lams`` > 0, and "holds" only "consistent" when
    fewer than half the used runs could be checked), a
    ``note`` saying what was excluded and why, and c·η = λ·Φ(t*) over the used runs (mean,
    ``c_eta_low``/``c_eta_high``: seed-interval method ``c_eta_interval``, over ``c_eta_n``
    runs; a constant only where the slope is −1)."""
    rows = []
    for lr, group in table.groupby("lr"):
        usable = _usable(group, estimator)
        positive = group[group["lam"] > 0]
        fit = fit_power_law(usable["lam"], usable[f"tstar_{estimator}"])
        dependent = _count(usable, f"budget_dependent_{estimator}")
        moved = budget_dependent_lams(usable, estimator, budget_tolerance)
        checked = int((usable[f"budget_checks_{estimator}"] > 0).sum()) \
            if f"budget_checks_{estimator}" in usable else 0
        verdict = slope_claim("", fit, -1.0, SLOPE_MARGIN).verdict
        if moved:
            verdict = "undetermined"
        elif verdict == "holds" and 2 * checked < len(usable):
            verdict = "consistent"  # t* too near the end of most runs to rule out the budget
        ci = seed_interval(usable[f"c_eta_{estimator}"])
        rows.append({"lr": lr, "runs": len(group), "used": len(usable),
                     "excluded_underfit": int((~positive["fits_train"]).sum()),
                     "excluded_censored": int((positive["fits_train"]
                                               & positive[f"censored_{estimator}"]).sum()),
                     **fit,
                     "contains_minus_one": bool(fit["ci_low"] <= -1.0 <= fit["ci_high"]),
                     "margin_low": SLOPE_MARGIN[0], "margin_high": SLOPE_MARGIN[1],
                     "budget_dependent": dependent, "budget_dependent_lams": len(moved),
                     "budget_checked": checked, "verdict": verdict,
                     "note": _fit_note(group, estimator, fit, moved,
                                       (dependent, checked)),
                     "c_eta": ci.mean, "c_eta_low": ci.low, "c_eta_high": ci.high,
                     "c_eta_interval": ci.label().rsplit(",", 1)[0], "c_eta_n": ci.n})
    return pd.DataFrame(rows)


def _count(frame: pd.DataFrame, column: str) -> int:
    return int(frame[column].fillna(False).astype(bool).sum()) if column in frame else 0


def _fit_note(group: pd.DataFrame, estimator: str, fit: dict[str, float], moved: list[float],
              counts: tuple[int, int]) -> str:
    """What happened to the runs of one fit, in words (for the CLI and the report)."""
    positive = group[group["lam"] > 0]
    fitting = positive[positive["fits_train"]]
    used = len(_usable(group, estimator))
    parts = []
    if len(positive) > len(fitting):
        parts.append(f"{len(positive) - len(fitting)} of {len(positive)} runs (λ > 0) never "
                     "reached the training accuracy (excluded)")
    censored = int(fitting[f"censored_{estimator}"].sum())
    if censored:
        parts.append(f"{censored} of {len(fitting)} runs censored for {estimator!r} (no "
                     "usable t* inside the budget)")
        others = {e: len(_usable(group, e)) for e in ESTIMATORS
                  if e != estimator and f"censored_{e}" in group}
        better = [f"{e!r} has {n} usable runs" for e, n in others.items() if n > used]
        parts += better
    if not math.isfinite(fit["slope"]):
        parts.append(f"no fit: {used} usable runs over {_usable(group, estimator)['lam'].nunique()}"
                     " λ (needs ≥ 3 runs over ≥ 2 λ)")
    dependent, checked = counts
    if moved:
        lams = ", ".join(f"{lam:g}" for lam in moved)
        parts.append(f"t* moves with the budget at λ = {lams} (median over seeds of t* in runs "
                     "cut to part of their budget; the slope may come from the budgets): "
                     "verdict undetermined")
    if used and f"budget_checks_{estimator}" in group:
        parts.append(f"budget independence checked on {checked} of {used} used runs"
                     + (f" ({dependent} moved by more than the tolerance singly)"
                        if dependent else "")
                     + ("; too few to rule out the budgets: at most consistent"
                        if 2 * checked < used and not moved else ""))
    return "; ".join(parts)


def _c_eta_text(fit: dict[str, Any]) -> str:
    """c·η with its own interval and method, apart from the slope's (which is the claim's
    interval); "not measured" rather than NaN where no run gave a t*."""
    if not math.isfinite(fit["c_eta"]):
        return "; c·η = λ·Φ(t*): not measured (no run with a usable t*)"
    low, high = fit["c_eta_low"], fit["c_eta_high"]
    interval = (f" [{low:.3g}, {high:.3g}]" if math.isfinite(low) and math.isfinite(high)
                else "")
    return (f"; c·η = λ·Φ(t*) = {fit['c_eta']:.3g}{interval} (that interval: "
            f"{fit['c_eta_interval']}, n = {fit['c_eta_n']})")


def _claim_row(kind: str, lr: float, claim: Any, note: str = "") -> dict[str, Any]:
    return {"kind": kind, "lr": lr, "claim": claim.claim, "measured": claim.measured,
            "verdict": claim.verdict, "ci": claim.ci, "note": note}


def tstar_verdict(table: pd.DataFrame, *, estimator: str = "smoothed",
                  flat_margin: float = FLAT_MARGIN) -> pd.DataFrame:
    """The paper's three t* claims against this data, one row per claim and learning rate,
    ready to become :class:`~l2dynamics.analysis.verdicts.Claim` objects: ``claim``, ``measured``,
    ``verdict`` (one of ``VERDICTS``), ``ci`` (the interval with its method and n), plus
    ``kind`` ("slope", "beats_zero" or "flat_small_lam"), ``lr`` and ``note``."""
    if table.empty:
        from l2dynamics.errors import ConfigError

        raise ConfigError("no runs to judge: the t* table is empty (the store holds no finished "
                          "classification run); train a λ sweep into it first, e.g. "
                          "l2dynamics sweep configs/sweeps/mnist1d_tstar.yaml")
    rows = []
    for fit in tstar_fits(table, estimator=estimator).to_dict(orient="records"):
        claim = slope_claim(f"t* ∝ 1/λ (η={fit['lr']:g})", fit, -1.0, SLOPE_MARGIN)
        claim.verdict = fit["verdict"]
        claim.measured += _c_eta_text(fit)
        rows.append(_claim_row("slope", fit["lr"], claim, fit["note"]))
    for lr, group in table.groupby("lr"):
        fitting = group[(group["lam"] > 0) & group["fits_train"]]
        zero = group.loc[group["lam"] == 0, "peak_acc"]
        if zero.notna().any() and fitting["peak_acc"].notna().any():
            rows.append(_beats_zero(lr, fitting, zero))
        flat = _flat_small_lam(lr, fitting, estimator, flat_margin)
        if flat is not None:
            rows.append(flat)
    return pd.DataFrame(rows, columns=["kind", "lr", "claim", "measured", "verdict", "ci",
                                       "note"])


def _beats_zero(lr: float, fitting: pd.DataFrame, zero: pd.Series) -> dict[str, Any]:
    means = fitting.groupby("lam")["peak_acc"].mean()
    best = float(means.idxmax())
    treated = fitting.loc[fitting["lam"] == best, "peak_acc"]
    claim = superiority_claim(
        f"some λ > 0 beats λ = 0 (η={lr:g})", treated, zero,
        what=f"best λ = {best:g}: peak accuracy {treated.mean():.4f} vs {zero.mean():.4f} at "
             "λ = 0, difference", candidates=len(means))
    return _claim_row("beats_zero", lr, claim)


def _flat_small_lam(lr: float, fitting: pd.DataFrame, estimator: str,
                    margin: float) -> dict[str, Any] | None:
    """Change of the peak accuracy across the small-λ half of the λ whose runs all peaked (a
    censored run had not peaked yet: its accuracy is a lower bound)."""
    peaked = fitting.groupby("lam")[f"censored_{estimator}"].any()
    lams = np.sort(peaked.index[~peaked.to_numpy()].to_numpy(float))
    small = lams[: max(2, (lams.size + 1) // 2)]
    if small.size < 2:
        return None
    runs = fitting[fitting["lam"].isin(small)]
    x = np.log10(runs["lam"].to_numpy(float))
    span = float(x.max() - x.min())
    line = fit_line(x, runs["peak_acc"].to_numpy(float))
    estimate, low, high = (line[k] * span for k in ("slope", "ci_low", "ci_high"))
    claim = equivalence_claim(
        f"peak accuracy flat in small λ (η={lr:g})", estimate, low, high, margin,
        what=f"change of the peak accuracy over λ ∈ [{small[0]:g}, {small[-1]:g}] "
             f"({small.size} λ)",
        method=f"95 % t-interval of (slope of peak accuracy on log10 λ) × {span:.2f} decades, "
               f"n = {line['points']} runs")
    return _claim_row("flat_small_lam", lr, claim)


def tstar_claims(table: pd.DataFrame, estimator: str = "smoothed", label: str = ""
                 ) -> list[Claim]:
    """The rows of :func:`tstar_verdict` as :class:`~l2dynamics.analysis.verdicts.Claim` objects,
    the claim prefixed by `label` and the row's ``note`` (what was excluded, and why a verdict
    is undetermined) appended to ``measured``."""
    rows = tstar_verdict(table, estimator=estimator).to_dict(orient="records")
    return [Claim(label + r["claim"], r["measured"] + (f" — {r['note']}" if r["note"] else ""),
                  r["verdict"], r["ci"]) for r in rows]
