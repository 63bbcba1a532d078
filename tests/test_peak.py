"""t* estimators and the under-fitting guard (seed intervals: tests/test_intervals.py)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2dynamics.analysis import estimate_peak, reaches_train_accuracy, smooth_log_time
from l2dynamics.train import eval_steps

STEPS = eval_steps(100_000, per_decade=20)[1:].astype(float)


def _bump(center: float, width: float = 0.3) -> np.ndarray:
    """Accuracy rising to 0.9 at `center` (steps) and falling after, Gaussian in log10(step)."""
    return 0.1 + 0.8 * np.exp(-((np.log10(STEPS) - math.log10(center)) / width) ** 2)


def test_clean_peak_is_found_by_all_estimators():
    acc = _bump(3000.0)
    est = estimate_peak(STEPS, acc)
    for name in ("raw", "smoothed"):
        assert est.get(name) == pytest.approx(3000.0, rel=0.13)  # one clock step = 12 %
    assert est.onset <= est.smoothed and est.peak_raw == acc.max()


def test_smoothing_beats_raw_argmax_on_a_noisy_plateau():
    rng = np.random.default_rng(0)
    truth = math.log10(3000.0)
    raw_err, smooth_err = [], []
    for _ in range(200):
        acc = _bump(3000.0, width=0.6) + rng.normal(0, 0.01, STEPS.size)
        est = estimate_peak(STEPS, acc)
        raw_err.append(abs(math.log10(est.raw) - truth))
        smooth_err.append(abs(math.log10(est.smoothed) - truth))
    assert np.mean(smooth_err) < 0.9 * np.mean(raw_err)  # measured ≈ 0.78 at window 0.2


def test_monotone_and_constant_curves():
    rising = np.linspace(0.1, 0.9, STEPS.size)
    est = estimate_peak(STEPS, rising)
    assert est.raw == STEPS[-1] and est.smoothed == STEPS[-1]
    flat = np.full(STEPS.size, 0.5)
    est = estimate_peak(STEPS, flat)
    assert est.raw == STEPS[0] and est.onset == STEPS[0]


def test_nan_and_empty_curves_do_not_crash():
    acc = _bump(300.0)
    acc[::3] = np.nan
    assert estimate_peak(STEPS, acc).raw == pytest.approx(300.0, rel=0.3)
    assert math.isnan(estimate_peak(STEPS, np.full(STEPS.size, np.nan)).raw)
    assert math.isnan(estimate_peak([], []).smoothed)
    with pytest.raises(ValueError):
        estimate_peak([1, 2], [0.5])
    with pytest.raises(ValueError):
        estimate_peak(STEPS, _bump(300.0)).get("median")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.floats(0.01, 1.0),
       st.floats(0.0, 0.2))
def test_any_curve_gives_steps_from_the_curve(values, window, delta):
    steps = STEPS[: len(values)]
    est = estimate_peak(steps, values, window=window, delta=delta)
    for name in ("raw", "smoothed", "onset"):
        assert est.get(name) in set(steps.tolist())
    assert est.onset <= est.smoothed
    assert min(values) - 1e-12 <= est.peak_smoothed <= max(values) + 1e-12


def test_smoothing_window_zero_is_identity_and_mean_preserving():
    acc = _bump(1000.0)
    np.testing.assert_allclose(smooth_log_time(STEPS, acc, window=0.0), acc)
    const = np.full(STEPS.size, 0.3)
    np.testing.assert_allclose(smooth_log_time(STEPS, const, window=0.5), const)


def test_underfitting_guard():
    assert reaches_train_accuracy([0.5, 0.995, 0.98])
    assert not reaches_train_accuracy([0.5, 0.9, np.nan])
    assert not reaches_train_accuracy([np.nan])
