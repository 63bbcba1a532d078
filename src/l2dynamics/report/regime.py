"""The regime map figure: one panel per quantity over (training-set size, width), one row per
network and loss, each cell coloured by what was measured there and labelled with its number."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from l2dynamics.analysis.regime import NETWORK_NAMES
from l2dynamics.report.figures import plt, save_figure

VERDICT_COLOURS = {"holds": "#2e7d32", "consistent": "#9ccc65", "does not hold": "#c62828",
                   "undetermined": "#bdbdbd"}
SHAPE_COLOURS = {"peak": "#1565c0", "plateau": "#bdbdbd", "no runs": "#ffffff"}


def _rows(cells: Any) -> list[tuple[str, Any]]:
    """The figure's rows: one per (network, loss), FC first; a map without a network column
    is of FC cells."""
    network = cells["network"] if "network" in cells else ["fc"] * len(cells)
    cells = cells.assign(network=network)
    order = {name: k for k, name in enumerate(NETWORK_NAMES)}
    keys = sorted({(n, loss) for n, loss in zip(cells["network"], cells["loss"], strict=True)},
                  key=lambda key: (order.get(key[0], len(order)), key[1]))
    return [(f"{NETWORK_NAMES.get(n, n)}, {loss}",
             cells[(cells["network"] == n) & (cells["loss"] == loss)]) for n, loss in keys]


def _grid(mine: Any, column: str) -> tuple[list, list, np.ndarray]:
    ns, widths = sorted(mine["n_train"].unique()), sorted(mine["width"].unique())
    values = np.full((len(widths), len(ns)), None, dtype=object)
    for row in mine.to_dict(orient="records"):
        values[widths.index(row["width"]), ns.index(row["n_train"])] = row[column]
    return ns, widths, values


def _categorical(ax: Any, values: np.ndarray, colours: dict[str, str],
                 labels: np.ndarray | None = None) -> None:
    for (i, j), value in np.ndenumerate(values):
        colour = colours.get(str(value), "#ffffff")
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color=colour))
        text = str(value) if labels is None else labels[i, j]
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if colour in ("#2e7d32", "#c62828", "#1565c0") else "black")


def _numeric(ax: Any, values: np.ndarray, cmap: str, vmin: float, vmax: float, fmt: str,
             fig: Any, label: str) -> None:
    data = np.array([[np.nan if v is None or not math.isfinite(float(v)) else float(v)
                      for v in row] for row in values])
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
    for (i, j), value in np.ndenumerate(data):
        dark = False
        if math.isfinite(value):  # white on the colour map's dark end (clipped values too)
            r, g, b, _ = image.cmap(image.norm(value))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.45
        ax.text(j, i, "—" if not math.isfinite(value) else format(value, fmt), ha="center",
                va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)


def plot_regime_map(cells: Any, path: str | Path) -> Path:
    """Panels: the verdict on t* ∝ 1/λ (with the slope), peak or plateau (with the share of
    runs that peak), the share of runs that fit their training data, the gain of the best λ over
    λ = 0 in points (★: its interval excludes 0), and c·η at the second η over the main η."""
    rows = _rows(cells)
    fig, axes = plt.subplots(len(rows), 5, figsize=(19, 3.9 * len(rows)), squeeze=False)
    for row, (name, mine) in enumerate(rows):
        ns, widths, verdicts = _grid(mine, "verdict")
        slopes = _grid(mine, "slope")[2]
        labels = np.array([[f"{v}\n{_slope(s)}" for v, s in zip(vr, sr, strict=True)]
                           for vr, sr in zip(verdicts, slopes, strict=True)], dtype=object)
        _categorical(axes[row, 0], verdicts, VERDICT_COLOURS, labels)
        shapes, shares = _grid(mine, "shape")[2], _grid(mine, "peak_share")[2]
        shape_labels = np.array([[f"{v}\n{float(p):.0%} peak" if p is not None
                                  and math.isfinite(float(p)) else str(v)
                                  for v, p in zip(vr, pr, strict=True)]
                                 for vr, pr in zip(shapes, shares, strict=True)], dtype=object)
        _categorical(axes[row, 1], shapes, SHAPE_COLOURS, shape_labels)
        _numeric(axes[row, 2], _grid(mine, "fit_share")[2], "Greens", 0, 1, ".0%", fig,
                 "share fitting")
        gains = _grid(mine, "gain")[2]
        points = np.array([[None if g is None else 100 * float(g) for g in r] for r in gains],
                          dtype=object)
        bound = max([abs(float(p)) for p in points.ravel() if p is not None
                     and math.isfinite(float(p))] + [0.5])
        _numeric(axes[row, 3], points, "RdBu", -bound, bound, "+.2f", fig, "points")
        for (i, j), verdict in np.ndenumerate(_grid(mine, "gain_verdict")[2]):
            if verdict == "holds":
                axes[row, 3].text(j + 0.35, i + 0.3, "★", ha="center", va="center",
                                  fontsize=9)
        _numeric(axes[row, 4], _grid(mine, "c_eta_ratio")[2], "PuOr", 0.5, 2.0, ".2f",
                 fig, "ratio")
        titles = ("t* ∝ 1/λ: verdict, slope", "test accuracy: peak or plateau",
                  "runs fitting their training data", "best λ − λ = 0, final accuracy",
                  "c·η at the second η / at the main η")
        for ax, title in zip(axes[row], titles, strict=True):
            ax.set_xticks(range(len(ns)), [str(n) for n in ns])
            ax.set_yticks(range(len(widths)), [str(w) for w in widths])
            ax.set_xlim(-0.5, len(ns) - 0.5)
            ax.set_ylim(-0.5, len(widths) - 0.5)
            ax.set(xlabel="training images", ylabel="channels" if "CNN" in name else "width",
                   title=f"{name}:\n{title}")
    fig.tight_layout()
    return save_figure(fig, path)


def _slope(value: Any) -> str:
    return "no slope" if value is None or not math.isfinite(float(value)) else \
        f"slope {float(value):.2f}"


__all__ = ["plot_regime_map"]
