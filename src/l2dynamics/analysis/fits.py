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
    points used; NaNs when fewer than 3 points remain (two points always fit exactly).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3:
        return {"slope": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "prefactor": math.nan, "r2": math.nan, "points": int(ok.sum())}
    fit = stats.linregress(np.log(x[ok]), np.log(y[ok]))
    half = stats.t.ppf(0.5 + level / 2, ok.sum() - 2) * fit.stderr
    return {"slope": float(fit.slope), "ci_low": float(fit.slope - half),
            "ci_high": float(fit.slope + half), "prefactor": float(math.exp(fit.intercept)),
            "r2": float(fit.rvalue**2), "points": int(ok.sum())}
