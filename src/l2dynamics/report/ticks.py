"""Tick labels a reader can read: narrow log axes get plain-number labels at 1, 2 and 5 of
each decade instead of matplotlib's overlapping minor-tick labels."""

from __future__ import annotations

from typing import Any

import numpy as np


def _tick_label(value: float, _: object = None) -> str:
    """A log-axis tick as a plain number (0.02, 300) or, far from 1, as m×10^e."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(abs(value))))
    mantissa = value / 10 ** exponent
    head = "" if np.isclose(mantissa, 1) else f"{mantissa:g}\\times"
    return f"${head}10^{{{exponent}}}$"


def readable_log_ticks(fig: Any) -> None:
    """On log axes spanning under 2.5 decades, label ticks at 1, 2 and 5 (every digit under
    0.7 decades) of each decade as plain numbers and leave the minor ticks unlabelled:
    matplotlib's default labels every minor tick of a narrow log axis, and the labels then
    overlap ("2×10⁻²3×10⁻²4×10⁻²")."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            low, high = sorted(limits)
            if scale != "log" or not (np.isfinite([low, high]).all() and low > 0):
                continue
            decades = np.log10(high / low)
            if decades >= 2.5:
                continue
            subs = (1.0, 2.0, 5.0) if decades >= 0.7 else tuple(range(1, 10))
            axis.set_major_locator(LogLocator(base=10, subs=subs))
            axis.set_major_formatter(FuncFormatter(_tick_label))
            axis.set_minor_formatter(NullFormatter())


__all__ = ["readable_log_ticks"]
