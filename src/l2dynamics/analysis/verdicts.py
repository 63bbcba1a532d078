"""Verdict rules shared by every study: a claim, its measured value and its verdict.

A study judges a claim of a paper against its own measurements and says one of
``"holds"``, ``"does not hold"`` or ``"undetermined"``. The rules that several studies use live
here, once: the test-set noise of an accuracy or error rate (binomial standard error), the
slope claim (a fitted power law against its expected exponent) and the flatness claim (a range
of values within a multiple of the test noise). Each study's own rules live with the study and
call these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERDICTS = ("holds", "does not hold", "undetermined")


@dataclass
class Claim:
    """One claim of a paper, what we measured, and the verdict.

    ``ci`` is the interval behind the measurement (its method and level in the text, e.g.
    "95 % CI [−1.2, −0.8]"), or None where the verdict rests on a plain comparison.
    """

    claim: str
    measured: str
    verdict: str  # one of VERDICTS
    ci: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "measured": self.measured, "verdict": self.verdict,
                "ci": self.ci}


def test_noise_se(rate: float, n_test: int | float | None) -> float:
    """Standard error of an accuracy (or error rate) measured on `n_test` examples: the
    binomial √(p(1 − p)/n). NaN when `n_test` is unknown or not positive."""
    if not n_test or n_test <= 0 or not math.isfinite(rate):
        return math.nan
    return math.sqrt(max(rate * (1.0 - rate), 0.0) / n_test)


test_noise_se.__test__ = False  # not a pytest test, despite its name


def slope_claim(claim: str, fit: Mapping[str, Any], expected: float) -> Claim:
    """A power-law slope against its expected value (:func:`analysis.fits.slope_verdict`):
    holds iff the fit's CI holds `expected` and excludes 0; "does not hold" if it excludes
    `expected`; undetermined when it holds both, or when there is no fit.

    `fit` has ``slope``, ``ci_low``, ``ci_high`` and the number of runs used in ``points`` (or
    ``used``)."""
    from l2dynamics.analysis.fits import slope_verdict

    points = int(fit.get("points", fit.get("used", 0)) or 0)
    slope = fit.get("slope", math.nan)
    if not (isinstance(slope, float | int) and math.isfinite(slope)):
        return Claim(claim, f"no fit ({points} usable points)", "undetermined")
    verdict = slope_verdict(dict(fit), expected)
    words = {"holds": "holds", "flat": "does not hold", "other": "does not hold",
             "undetermined": "undetermined"}[verdict]
    return Claim(claim, f"slope {slope:.2f} over {points} runs", words,
                 f"95 % CI [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]")


def within_noise_claim(claim: str, spread: float, noise: float, multiple: float, *,
                       what: str = "range") -> Claim:
    """A "hardly depends on" claim: holds iff `spread` ≤ `multiple` × `noise` (the test-noise
    SE); undetermined when either is not finite."""
    measured = f"{what} {spread:.4f}; test-noise SE {noise:.4f}"
    if not (math.isfinite(spread) and math.isfinite(noise)):
        return Claim(claim, measured, "undetermined")
    return Claim(claim, measured, "holds" if spread <= multiple * noise else "does not hold")


def ratio_claim(claim: str, ratios: list[float], tolerance: float) -> Claim:
    """Measured/predicted ratios: holds iff every |ratio − 1| ≤ `tolerance`."""
    measured = "measured/predicted " + ", ".join(f"{x:.3f}" for x in ratios)
    if not ratios or not all(math.isfinite(x) for x in ratios):
        return Claim(claim, measured, "undetermined")
    ok = all(abs(x - 1.0) <= tolerance for x in ratios)
    return Claim(claim, measured, "holds" if ok else "does not hold")
