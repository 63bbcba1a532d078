"""The evaluation clock: log-spaced steps so that early and late peaks are both resolved."""

from __future__ import annotations

import numpy as np


def eval_steps(total_steps: int, per_decade: int = 10, every: int = 0) -> np.ndarray:
    """Sorted unique steps in [0, total_steps] at which metrics are taken.

    Step s means "after s optimizer updates". The grid holds 0, 1, round(10^(k/per_decade)) for
    k = 0, 1, …, the final step, and every multiple of `every` when `every` > 0 (a linear tail).
    """
    if total_steps < 0:
        raise ValueError("total_steps must be >= 0")
    points = [0, total_steps]
    if total_steps >= 1:
        count = int(np.floor(per_decade * np.log10(total_steps))) + 1
        points += np.round(10.0 ** (np.arange(count) / per_decade)).astype(int).tolist()
    if every > 0:
        points += list(range(0, total_steps + 1, every))
    return np.unique(np.clip(points, 0, total_steps))
