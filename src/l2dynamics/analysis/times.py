"""Characteristic times of the theory study's networks, over seeds: summaries with seed
intervals (:func:`~l2dynamics.analysis.intervals.seed_interval`), power-law fits of each time
against λ, and the verdict per time and width.

Times are in flow units; a time ``censored_<name>`` (not seen inside the run) is left out.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from l2dynamics.analysis.fits import fit_power_law, slope_verdict
from l2dynamics.analysis.intervals import seed_interval

TIME_NAMES = ("t_peak", "t_window_end", "t_loss_min", "t_loss_min_late", "t_lazy_end")
TIME_LABELS = {"t_peak": "accuracy peak", "t_window_end": "end of the high-accuracy window",
               "t_loss_min": "global test-loss minimum",
               "t_loss_min_late": "last test-loss minimum",
               "t_lazy_end": "departure from the lazy regime"}



def network_time_summary(times: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """Seed mean and interval of each characteristic time, per (source, width, λ, time): a
    `level` t-interval over ≥ 3 seeds that saw it, the seed range over 2 (``interval`` names
    the method, ``seen`` is its n); λ·t of the mean; ``seeds`` is the number of runs."""
    rows = []
    for (source, width, lam), group in times.groupby(["source", "width", "lam"]):
        for name in TIME_NAMES:
            seen = group.loc[~group[f"censored_{name}"], name]
            ci = seed_interval(seen, level)
            rows.append({"source": source, "width": width, "lam": lam, "time": name,
                         "seeds": len(group), "seen": ci.n, "mean": ci.mean,
                         "low": ci.low, "high": ci.high,
                         "interval": ci.label().rsplit(",", 1)[0], "lam_t": lam * ci.mean})
    return pd.DataFrame(rows)


def network_time_fits(times: pd.DataFrame) -> pd.DataFrame:
    """Slope p of log t vs log λ per (source, width, time) over all uncensored (λ, seed) runs,
    with its 95 % CI and :func:`~l2dynamics.analysis.fits.slope_verdict` (holds = ∝ 1/λ)."""
    rows = []
    for (source, width), group in times.groupby(["source", "width"]):
        for name in TIME_NAMES:
            used = group[~group[f"censored_{name}"]]
            fit = fit_power_law(used["lam"], used[name])
            rows.append({"source": source, "width": width, "time": name,
                         "lams": int(used["lam"].nunique()), **fit,
                         "verdict": slope_verdict(fit)})
    return pd.DataFrame(rows)


VERDICT_WORDS = {"holds": "∝ 1/λ", "flat": "independent of λ",
                 "undetermined": "undetermined (CI holds −1 and 0)",
                 "other": "a power law, not 1/λ"}


def time_verdict(fits: pd.DataFrame) -> pd.DataFrame:
    """Per characteristic time and width: does it scale as 1/λ in the networks, and in the
    flow from the same initial outputs? Needs ≥ 3 uncensored runs over ≥ 2 values of λ."""
    rows = []
    for (width, name), group in fits.groupby(["width", "time"], sort=False):
        row: dict[str, Any] = {"time": TIME_LABELS[name], "width": width}
        for source in ("network", "flow"):
            fit = group[group["source"] == source]
            if fit.empty or name == "t_lazy_end" and source == "flow":
                row[source] = "—"
                continue
            f = fit.iloc[0]
            if not math.isfinite(f["slope"]) or f["lams"] < 2:
                row[source] = f"undetermined ({int(f['points'])} runs seen)"
                continue
            row[source] = (f"slope {f['slope']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}], "
                           f"{int(f['points'])} runs: {VERDICT_WORDS[f['verdict']]}")
        rows.append(row)
    return pd.DataFrame(rows)
