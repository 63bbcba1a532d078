"""Verdict rules shared by every study: a claim, its measured value and its verdict.

A study judges a claim of a paper against its own measurements and says one of:

- ``"holds"``: the measurement confirms the claim to within a stated margin (an equivalence
  test: the whole interval lies inside the margin), or, for "A beats B", the interval of the
  difference excludes 0;
- ``"consistent"``: the paper's value lies inside the interval, but the interval is too wide
  to confirm it (it reaches outside the margin);
- ``"does not hold"``: the interval excludes the paper's value (or lies outside the margin);
- ``"undetermined"``: the interval holds the paper's value *and* its negation (e.g. a slope
  interval holding −1 and 0), or there is nothing to judge.

"Holds" is never a failure to reject: a flat relation holds only when its interval is inside
the margin of flatness, not when its spread is below the noise. The rules several studies use
live here, once: the test-set noise of an accuracy (binomial SE), the slope claim, the
equivalence (flatness) claim, the superiority claim and the ratio claim. Each study's own rules
live with the study and call these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from l2dynamics.analysis.intervals import welch_interval

VERDICTS = ("holds", "consistent", "does not hold", "undetermined")
VERDICT_LABELS = {"holds": "holds",
                  "consistent": "consistent (too imprecise to confirm)",
                  "does not hold": "does not hold",
                  "undetermined": "undetermined"}

# The equivalence margin of a slope −1: a power of λ between −1.25 and −0.8 (a factor 1.25 on
# the exponent either way, symmetric in log). Over the usual 4–10× range of λ this is a t* that
# changes by 3.0–5.7× (4×) or 6.3–18× (10×) instead of 4× or 10×: a law that close to 1/λ
# predicts the best λ for a budget to within the grid spacing of such studies. A slope of −0.5
# (√λ) or −1.5 lies outside it.
SLOPE_MARGIN = (-1.25, -0.8)


@dataclass
class Claim:
    """One claim of a paper, what we measured, and the verdict.

    ``ci`` is the interval behind the measurement, its method and n in the text (e.g. "95 %
    t-interval of the slope, n = 9 runs: [−1.2, −0.9]; margin [−1.25, −0.80]"), or None where
    the verdict rests on a plain comparison.
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


def _finite(*values: Any) -> bool:
    return all(isinstance(v, float | int) and math.isfinite(v) for v in values)


def slope_margin(expected: float) -> tuple[float, float]:
    """The equivalence margin of a slope `expected`: ``SLOPE_MARGIN`` scaled to it (a factor
    1.25 on the exponent either way); expected = 0 has no relative margin and raises."""
    if expected == 0:
        raise ValueError("a slope 0 needs an explicit margin (e.g. margin=(-0.1, 0.1))")
    a, b = -expected * SLOPE_MARGIN[0], -expected * SLOPE_MARGIN[1]
    return (min(a, b), max(a, b))


def slope_rule(low: float, high: float, expected: float,
               margin: tuple[float, float]) -> str:
    """The slope verdict of a CI [low, high]: "holds" iff it lies inside `margin`; else "does
    not hold" iff it excludes `expected`; else "undetermined" iff it also contains 0; else
    "consistent"."""
    if not _finite(low, high):
        return "undetermined"
    if margin[0] <= low and high <= margin[1]:
        return "holds"
    if not low <= expected <= high:
        return "does not hold"
    return "undetermined" if low <= 0.0 <= high else "consistent"


def slope_claim(claim: str, fit: Mapping[str, Any], expected: float,
                margin: tuple[float, float] | None = None) -> Claim:
    """A power-law slope against its expected value, judged by :func:`slope_rule`.

    `fit` has ``slope``, ``ci_low``, ``ci_high`` (a t-interval, as
    :func:`~l2dynamics.analysis.fits.fit_power_law` gives) and the number of runs in ``points``
    (or ``used``). `margin` defaults to :func:`slope_margin` (``SLOPE_MARGIN`` for −1)."""
    margin = slope_margin(expected) if margin is None else tuple(margin)
    points = int(fit.get("points", fit.get("used", 0)) or 0)
    slope, low, high = (fit.get(k, math.nan) for k in ("slope", "ci_low", "ci_high"))
    margin_text = f"margin [{margin[0]:.2f}, {margin[1]:.2f}]"
    if not _finite(slope, low, high):
        return Claim(claim, f"no fit ({points} usable runs); {margin_text}", "undetermined")
    verdict = slope_rule(low, high, expected, margin)
    return Claim(claim, f"slope {slope:.2f} over {points} runs (expected {expected:g}, "
                        f"{margin_text})", verdict,
                 f"95 % t-interval of the slope, n = {points} runs: [{low:.2f}, {high:.2f}]; "
                 f"{margin_text}")


def equivalence_rule(low: float, high: float, margin: float) -> str:
    """"holds" iff [low, high] ⊂ [−margin, margin]; "does not hold" iff it lies entirely
    outside; "undetermined" otherwise (too imprecise) or when not finite."""
    if not _finite(low, high, margin):
        return "undetermined"
    if -margin <= low and high <= margin:
        return "holds"
    if high < -margin or low > margin:
        return "does not hold"
    return "undetermined"


def equivalence_claim(claim: str, estimate: float, low: float, high: float, margin: float, *,
                      what: str, unit: str = "", method: str = "95 % interval") -> Claim:
    """A flatness ("hardly depends on") claim as an equivalence test of `what` (a change or a
    difference, `estimate` with interval [low, high] made by `method`) against ±`margin`:
    :func:`equivalence_rule`. A spread below the noise is not evidence of flatness; an interval
    inside the margin is."""
    u = f" {unit}" if unit else ""
    measured = f"{what} {estimate:+.4g}{u}; equivalence margin ±{margin:.4g}{u}"
    verdict = equivalence_rule(low, high, margin)
    if not _finite(estimate, low, high):
        return Claim(claim, measured, "undetermined", f"{method}: no interval")
    if verdict == "undetermined":
        measured += " (the interval reaches outside the margin: too imprecise to tell)"
    return Claim(claim, measured, verdict,
                 f"{method}: [{low:+.4g}, {high:+.4g}]{u}; margin ±{margin:.4g}{u}")


def superiority_claim(claim: str, treated: Iterable[float], control: Iterable[float], *,
                      what: str = "difference", candidates: int = 1,
                      level: float = 0.95) -> Claim:
    """"A beats B": Welch t-interval of mean(treated) − mean(control) over seeds; "holds" iff
    its low end > 0, "does not hold" iff its high end ≤ 0, else "undetermined".

    When `treated` is the best of `candidates` settings picked from the same data, the pick
    inflates the difference (the maximum of noisy means): the interval is then
    Bonferroni-adjusted to level 1 − (1 − `level`)/`candidates`, which bounds the chance of a
    false "holds" by (1 − level)/2 again, and the text says so."""
    candidates = max(1, int(candidates))
    adjusted = 1.0 - (1.0 - level) / candidates
    ci = welch_interval(treated, control, level=adjusted)
    measured = f"{what} {ci.mean:+.4f}"
    if candidates > 1:
        measured += (f" (best of {candidates} selected from the same runs: the selection "
                     f"inflates the difference; interval Bonferroni-adjusted for {candidates})")
    if not _finite(ci.low, ci.high):
        return Claim(claim, measured, "undetermined",
                     f"Welch t-interval needs ≥ 2 seeds on each side (n = {ci.n})")
    verdict = "holds" if ci.low > 0 else "does not hold" if ci.high <= 0 else "undetermined"
    return Claim(claim, measured, verdict,
                 f"{adjusted * 100:.3g} % Welch t-interval of the difference of seed means, "
                 f"n = {ci.n} seeds per side: [{ci.low:+.4f}, {ci.high:+.4f}]")


def within_noise_claim(claim: str, spread: float, noise: float, multiple: float, *,
                       what: str = "range") -> Claim:
    """Deprecated, kept while studies still call it: a "hardly depends on" claim that holds iff
    `spread` ≤ `multiple` × `noise` — absence of evidence; use :func:`equivalence_claim`."""
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
