"""Power-law fits with honest uncertainty."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def fit_power_law(x: Sequence[float], y: Sequence[float], level: float = 0.95
                  ) -> dict[str, float]:
    """Least squares of log y = p·log x + b over the finite, positive points.

    Returns the slope p with a `level` t-interval, the prefactor e^b, R² and the number of
    points used; NaNs when fewer than 3 points remain (two points always fit exactly) or all
    remaining points share one x (repeated seeds at a single λ fix no slope).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3 or np.unique(x[ok]).size < 2:
        return {"slope": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "prefactor": math.nan, "r2": math.nan, "points": int(ok.sum())}
    fit = stats.linregress(np.log(x[ok]), np.log(y[ok]))
    half = stats.t.ppf(0.5 + level / 2, ok.sum() - 2) * fit.stderr
    return {"slope": float(fit.slope), "ci_low": float(fit.slope - half),
            "ci_high": float(fit.slope + half), "prefactor": float(math.exp(fit.intercept)),
            "r2": float(fit.rvalue**2), "points": int(ok.sum())}


def fit_line(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Least squares of y = a·x + b over the finite points: the slope a with its `level`
    t-interval (n − 2 degrees of freedom) and the number of points; NaNs when fewer than 3
    points or a single x remain."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.unique(x[ok]).size < 2:
        return {"slope": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "points": int(ok.sum())}
    fit = stats.linregress(x[ok], y[ok])
    half = stats.t.ppf(0.5 + level / 2, ok.sum() - 2) * fit.stderr
    return {"slope": float(fit.slope), "ci_low": float(fit.slope - half),
            "ci_high": float(fit.slope + half), "points": int(ok.sum())}


def slope_verdict(fit: dict[str, float], expected: float = -1.0) -> str:
    """Classify a fitted slope against the law t ∝ λ^expected and against no dependence
    (a description of the CI; the verdicts of claims use
    :func:`l2dynamics.analysis.verdicts.slope_rule`, with an equivalence margin).

    ``"holds"``: the CI contains `expected` and excludes 0; ``"flat"``: it contains 0 and excludes
    `expected`; ``"undetermined"``: it contains both (too few or too noisy points) or no fit;
    ``"other"``: it excludes both (a power law with another exponent)."""
    slope, low, high = fit.get("slope"), fit.get("ci_low"), fit.get("ci_high")
    if slope is None or not all(math.isfinite(v) for v in (slope, low, high)):
        return "undetermined"
    has_expected, has_zero = low <= expected <= high, low <= 0.0 <= high
    if has_expected and not has_zero:
        return "holds"
    if has_zero and not has_expected:
        return "flat"
    return "undetermined" if has_expected else "other"
