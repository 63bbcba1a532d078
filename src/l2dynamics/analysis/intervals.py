"""Intervals over a handful of seeds, named by what they are.

Studies run 2–5 seeds per setting. A percentile bootstrap over so few values is far narrower
than its nominal level (over 2 seeds it covers the true mean about half the time, over 3 about
three quarters), so seed intervals are:

- n ≥ 3: the Student t-interval of the mean, x̄ ± t_{n−1}·s/√n ("t-interval"), exact for
  normal seed-to-seed variation;
- n = 2: the seed range [min, max] ("seed range"): a description of the two seeds, not a
  confidence interval (it covers the mean only half the time; the t-interval with one degree of
  freedom is 12.7 standard errors wide and says nothing either);
- n = 1: the single value ("single seed"), n = 0: NaNs ("no seeds").

:func:`welch_interval` gives the Welch t-interval of a difference of two seed means, for "this
setting beats that one".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

METHODS = ("t-interval", "seed range", "single seed", "no seeds", "Welch t-interval")


@dataclass(frozen=True)
class SeedInterval:
    """A seed mean (or difference of means) with its interval and how it was made."""

    mean: float
    low: float
    high: float
    n: int  # seeds (for a difference: the smaller arm)
    method: str  # one of METHODS
    level: float = 0.95

    @property
    def is_confidence_interval(self) -> bool:
        """True for a t-interval (nominal coverage `level`); False for a range or a point."""
        return self.method in ("t-interval", "Welch t-interval") and math.isfinite(self.low)

    def label(self) -> str:
        """The method in words: "95 % t-interval, n = 5", "seed range, n = 2", …"""
        if self.is_confidence_interval:
            return f"{self.level * 100:g} % {self.method}, n = {self.n}"
        return f"{self.method}, n = {self.n}"

    def text(self, digits: int = 3) -> str:
        """E.g. "95 % t-interval, n = 5: [0.812, 0.845]" or "seed range, n = 2: [a, b]";
        `digits` significant digits."""
        if self.n == 0 or not math.isfinite(self.mean):
            return f"{self.method}, n = {self.n}"
        if self.method == "single seed":
            return f"single seed, n = 1: {self.mean:.{digits}g} (no interval)"
        return f"{self.label()}: [{self.low:.{digits}g}, {self.high:.{digits}g}]"

    def contains(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    return arr[np.isfinite(arr)]


def seed_interval(values: Iterable[float], level: float = 0.95) -> SeedInterval:
    """The interval of the mean of `values` over seeds (NaNs dropped): a `level` Student
    t-interval for n ≥ 3, the seed range for n = 2, the value itself for n = 1, NaNs for 0."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return SeedInterval(math.nan, math.nan, math.nan, 0, "no seeds", level)
    mean = float(x.mean())
    if n == 1:
        return SeedInterval(mean, mean, mean, 1, "single seed", level)
    if n == 2:
        return SeedInterval(mean, float(x.min()), float(x.max()), 2, "seed range", level)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return SeedInterval(mean, mean - half, mean + half, n, "t-interval", level)


def welch_interval(treated: Iterable[float], control: Iterable[float],
                   level: float = 0.95) -> SeedInterval:
    """Welch t-interval of mean(treated) − mean(control) (unequal variances, Welch–Satterthwaite
    degrees of freedom). Needs ≥ 2 finite values in each arm, else NaN bounds. ``n`` is the
    smaller arm."""
    a, b = _finite(treated), _finite(control)
    n = int(min(a.size, b.size))
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if n < 2:
        return SeedInterval(diff, math.nan, math.nan, n, "Welch t-interval", level)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return SeedInterval(diff, diff, diff, n, "Welch t-interval", level)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return SeedInterval(diff, diff - half, diff + half, n, "Welch t-interval", level)
