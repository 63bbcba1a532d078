"""Estimators of the peak time t* of a test-accuracy curve taken on a log-spaced clock.

Three estimators, all reported:

- ``raw``: the first step of maximal accuracy. Unbiased on a clean curve, but on a noisy
  plateau it jumps between distant steps (the test-set noise of one example moves it).
- ``smoothed`` (the default): the accuracy is averaged in windows of ``window`` decades of
  step (the natural unit of the log clock, where a plateau spanning a decade has as many points
  as one spanning a thousand steps early on), then the raw argmax is taken of the smoothed
  curve. Noise of the test set is averaged out over a fixed fraction of log-time.
- ``onset``: the first step at which the smoothed accuracy is within ``delta`` of its maximum
  — the start of the plateau, which is what a user stopping early would hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("raw", "smoothed", "onset")


@dataclass(frozen=True)
class PeakEstimate:
    """t* (in the unit of `steps`) and the accuracy there, by each estimator."""

    raw: float
    smoothed: float
    onset: float
    peak_raw: float  # maximal accuracy (raw curve)
    peak_smoothed: float  # maximal smoothed accuracy

    def get(self, estimator: str = "smoothed") -> float:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        return getattr(self, estimator)


def smooth_log_time(steps: np.ndarray, values: np.ndarray, window: float = 0.2) -> np.ndarray:
    """Mean of `values` over |log10 s − log10 s_i| ≤ window/2 for each point i (steps > 0;
    a step of 0 is kept as it is)."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    out = values.copy()
    positive = steps > 0
    logs = np.log10(steps[positive])
    vals = values[positive]
    near = np.abs(logs[:, None] - logs[None, :]) <= window / 2
    finite = np.isfinite(vals)
    weights = near & finite[None, :]
    sums = (weights * np.where(finite, vals, 0.0)[None, :]).sum(axis=1)
    counts = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[positive] = np.where(counts > 0, sums / counts, np.nan)
    return out


def estimate_peak(steps, accuracy, *, window: float = 0.2, delta: float = 0.005) -> PeakEstimate:
    """All three t* estimates of one curve. NaN accuracies are ignored; an all-NaN curve gives
    NaNs. `window` in decades of step, `delta` in accuracy."""
    steps = np.asarray(steps, float)
    acc = np.asarray(accuracy, float)
    if steps.shape != acc.shape or steps.ndim != 1:
        raise ValueError("steps and accuracy must be 1-D arrays of the same length")
    if steps.size == 0 or not np.isfinite(acc).any():
        nan = float("nan")
        return PeakEstimate(nan, nan, nan, nan, nan)
    order = np.argsort(steps, kind="stable")
    steps, acc = steps[order], acc[order]
    i_raw = int(np.nanargmax(acc))
    smooth = smooth_log_time(steps, acc, window)
    i_smooth = int(np.nanargmax(smooth))
    best = smooth[i_smooth]
    # a few ulps of slack: window means of equal values may differ in the last bit, and with
    # delta = 0 that rounding alone would move the onset of a flat curve off its first step
    i_onset = int(np.nonzero(smooth >= best - delta - 1e-12 * max(1.0, abs(best)))[0][0])
    return PeakEstimate(raw=float(steps[i_raw]), smoothed=float(steps[i_smooth]),
                        onset=float(steps[i_onset]), peak_raw=float(acc[i_raw]),
                        peak_smoothed=float(best))


def reaches_train_accuracy(train_accuracy, threshold: float = 0.99) -> bool:
    """The under-fitting guard: did the run ever reach `threshold` training accuracy?
    Runs that do not are outside the paper's over-parameterized regime."""
    acc = np.asarray(train_accuracy, float)
    return bool(np.isfinite(acc).any() and np.nanmax(acc) >= threshold)
