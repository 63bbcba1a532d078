"""How much L2 matters on a task: the best λ > 0 against λ = 0, with an interval.

This is the first thing a practitioner asks of a study, so every study with a λ = 0 arm run at
the same budget as its λ > 0 arms states it before anything else (:func:`l2_effect_claim`).
The rule is :func:`~l2dynamics.analysis.verdicts.superiority_claim`: a Welch t-interval of the
difference of seed means, Bonferroni-adjusted for picking the best of the λ > 0 values from the
same runs (the pick inflates the difference). "holds" means L2 helps (the interval's low end is
above 0), "does not hold" that it does not help (its high end is at or below 0), "undetermined"
that the seeds cannot tell. Accuracies are fractions; the text also gives points (× 100).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from l2dynamics.analysis.intervals import SeedInterval, welch_interval
from l2dynamics.analysis.verdicts import Claim, superiority_claim


def _clean(groups: Mapping[float, Sequence[float]]) -> dict[float, list[float]]:
    return {float(lam): [float(v) for v in values if math.isfinite(float(v))]
            for lam, values in groups.items()}


def best_against_zero(groups: Mapping[float, Sequence[float]]
                      ) -> tuple[float, SeedInterval] | None:
    """(the best λ > 0 by seed mean, the Bonferroni-adjusted Welch interval of its mean minus
    λ = 0's), as :func:`l2_effect_claim` judges them; None without λ = 0 or a λ > 0."""
    clean = _clean(groups)
    zero = clean.get(0.0, [])
    positive = {lam: v for lam, v in clean.items() if lam > 0 and v}
    if not zero or not positive:
        return None
    best = max(positive, key=lambda lam: float(np.mean(positive[lam])))
    return best, welch_interval(positive[best], zero, level=1.0 - 0.05 / len(positive))


def l2_effect_claim(groups: Mapping[float, Sequence[float]], *, what: str = "final test accuracy",
                    label: str = "") -> Claim:
    """"L2 helps": the best λ > 0 (by seed mean of `what`) against λ = 0.

    `groups` maps λ to one value per seed (NaNs dropped); λ = 0 and at least one λ > 0 are
    needed, else the claim is undetermined. `label` prefixes the claim (e.g. "(BN) ")."""
    clean = _clean(groups)
    zero = clean.get(0.0, [])
    positive = {lam: v for lam, v in clean.items() if lam > 0 and v}
    claim = f"{label}L2 helps: the best λ > 0 beats λ = 0 on {what}"
    if not zero or not positive:
        missing = "λ = 0" if not zero else "λ > 0"
        return Claim(claim, f"no runs at {missing} with a finite {what}", "undetermined")
    best, ci = best_against_zero(clean)
    mean_best, mean_zero = float(np.mean(positive[best])), float(np.mean(zero))
    out = superiority_claim(f"{label}L2 helps: the best λ > 0 (λ = {best:g}) beats λ = 0 on "
                            f"{what}", positive[best], zero, what="best λ − λ = 0",
                            candidates=len(positive))
    points = (f" [{100 * ci.low:+.2f}, {100 * ci.high:+.2f}]" if math.isfinite(ci.low)
              else "")
    out.measured = (f"{mean_best:.4f} at λ = {best:g} vs {mean_zero:.4f} at λ = 0: "
                    f"{100 * (mean_best - mean_zero):+.2f}{points} points; " + out.measured)
    return out


def groups_by_lam(rows: Any, column: str, *, lr: float | None = None) -> dict[float, list[float]]:
    """λ → the values of `column` over seeds, from a table with ``lam`` (and ``lr``) columns
    (a pandas DataFrame such as :func:`~l2dynamics.analysis.tstar.tstar_table`'s); only the rows
    at learning rate `lr` when it is given."""
    if lr is not None:
        rows = rows[np.isclose(rows["lr"].to_numpy(float), lr)]
    return {float(lam): g[column].to_list() for lam, g in rows.groupby("lam")}


__all__ = ["best_against_zero", "groups_by_lam", "l2_effect_claim"]
