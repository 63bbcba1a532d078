"""Equivalence over several settings: "the outcome hardly depends on the setting".

The claim holds only when every pair of settings is shown to differ by less than a stated
margin — each pair's Welch t-interval of the difference of seed means inside ±margin (an
intersection–union test: its error rate is that of one interval, and it is conservative). It
does not hold when some pair's interval lies entirely outside the margin, and is undetermined
(too imprecise) otherwise. A spread below the noise is never taken as evidence of flatness.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from l2dynamics.analysis.intervals import welch_interval
from l2dynamics.analysis.verdicts import Claim, equivalence_rule


def groups_equivalence_claim(claim: str, groups: Mapping[float, Sequence[float]],
                             margin: float, *, what: str, unit: str = "",
                             level: float = 0.95) -> Claim:
    """`groups`: setting → per-seed outcomes. Judges max |difference of seed means| against
    ±`margin` through the widest pairwise Welch interval (see the module docstring)."""
    keys = [k for k, v in groups.items() if len(v) > 0]
    u = f" {unit}" if unit else ""
    if len(keys) < 2:
        return Claim(claim, f"fewer than 2 settings with runs ({len(keys)})", "undetermined")
    pairs = [welch_interval(groups[a], groups[b], level=level)
             for a, b in itertools.combinations(keys, 2)]
    verdicts = [equivalence_rule(ci.low, ci.high, margin) for ci in pairs]
    verdict = ("does not hold" if "does not hold" in verdicts
               else "holds" if all(v == "holds" for v in verdicts) else "undetermined")
    largest = max(pairs, key=lambda ci: abs(ci.mean))
    widest = max(pairs, key=lambda ci: max(abs(ci.low), abs(ci.high)))
    n = min(len(groups[k]) for k in keys)
    measured = (f"largest difference of seed means {largest.mean:+.4g}{u} over {len(keys)} "
                f"settings; equivalence margin ±{margin:.4g}{u}")
    if verdict == "undetermined":
        measured += " (an interval reaches outside the margin: too imprecise to tell)"
    ci = (f"{level * 100:g} % Welch t-intervals of every pairwise difference, n ≥ {n} seeds "
          f"per setting; the widest: [{widest.low:+.4g}, {widest.high:+.4g}]{u}")
    return Claim(claim, measured, verdict, ci)
