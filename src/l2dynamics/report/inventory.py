"""What a saved figure draws, written into the PNG by
:func:`~l2dynamics.report.figures.save_figure` and checked by the report against the
figure's caption: the series the caption names must be drawn, and no panel may be empty
without saying why. Imports no matplotlib."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INVENTORY_KEY = "l2dynamics-panels"
"""PNG text chunk that holds what a saved figure draws (:func:`figure_inventory`)."""


def _has_data(artist: Any) -> bool:
    """Whether an artist draws at least one finite point (a line of NaNs draws nothing)."""
    import numpy as np

    def finite_rows(xy: Any) -> bool:
        xy = np.ma.filled(np.ma.asarray(xy, dtype=float), np.nan).reshape(-1, 2)
        return bool(len(xy)) and bool(np.isfinite(xy).all(axis=1).any())

    if hasattr(artist, "get_xydata"):  # lines
        return finite_rows(artist.get_xydata())
    if hasattr(artist, "lines") and isinstance(artist.lines, tuple):  # errorbar containers
        line = artist.lines[0]
        return line is not None and _has_data(line)
    if hasattr(artist, "get_offsets") and len(artist.get_offsets()):  # scatter
        return finite_rows(artist.get_offsets())
    if hasattr(artist, "get_paths"):  # line and polygon collections
        return any(finite_rows(p.vertices) for p in artist.get_paths() if len(p.vertices))
    return True  # patches, images


def figure_inventory(fig: Any) -> dict[str, Any]:
    """What `fig` draws, for checking it against its caption: per visible panel (colour bars
    left out) its title, the labels of its labelled series that draw a finite point, how many
    data artists draw one (lines, collections, images, patches), and its text notes (e.g.
    "no data: …"); and the labels of figure-level legends."""
    panels = []
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        drawn = [a for a in [*ax.lines, *ax.collections, *ax.images, *ax.patches]
                 if _has_data(a)]
        labels = [str(a.get_label()) for a in [*drawn, *ax.containers] if _has_data(a)]
        panels.append({"title": ax.get_title(), "artists": len(drawn),
                       "labels": sorted({x for x in labels if x and not x.startswith("_")}),
                       "notes": [t.get_text() for t in ax.texts if t.get_text()]})
    legends = sorted({t.get_text() for leg in fig.legends for t in leg.get_texts()})
    return {"panels": panels, "legend": legends}


def read_inventory(path: str | Path) -> dict[str, Any] | None:
    """The inventory :func:`save_figure` wrote into a PNG, or None (not a PNG, or saved
    without one)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(INVENTORY_KEY)
    except OSError:
        return None
    return json.loads(text) if text else None


def inventory_problems(inventory: Mapping[str, Any] | None, series: Any = ()) -> list[str]:
    """What a saved figure fails to show: a series its caption names (`series`, matched
    case-insensitively as the start of a label: "λ=" matches "λ=0.001", "BN" does not match
    "no BN") that no panel draws, and a panel that draws nothing
    without a note saying why. [] when there is no inventory to check."""
    if not inventory:
        return []
    panels = inventory.get("panels", [])
    labels = [x.lower() for p in panels for x in p.get("labels", [])]
    labels += [x.lower() for x in inventory.get("legend", [])]
    problems = [f"the caption names “{name}”, but no series of that name is drawn"
                for name in series if not any(x.startswith(str(name).lower()) for x in labels)]
    for i, panel in enumerate(panels, 1):
        if not panel.get("artists") and not panel.get("notes"):
            title = panel.get("title") or f"panel {i}"
            problems.append(f"“{title}” draws nothing and does not say why")
    return problems


__all__ = ["INVENTORY_KEY", "figure_inventory", "inventory_problems", "read_inventory"]
