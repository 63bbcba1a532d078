"""Figures of training runs (matplotlib, Agg backend; written atomically)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save through a temporary file and rename, so a crash never leaves half an image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a figure is meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plot_runs(histories: Mapping[str, pd.DataFrame], path: str | Path, *,
              title: str | None = None) -> Path:
    """Training curves of one or more runs (label → wide history from the store or a RunResult).

    Panels: test accuracy vs step (log axis, peak marked), train/test loss vs step, total weight
    norm vs step, and test accuracy vs λ-time Σηλ (the variable in which t* ≈ c/(ηλ) collapses).
    Regression runs show test loss where accuracy would be.
    """
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (ax_acc, ax_loss), (ax_norm, ax_lam) = axes
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(histories))))
    for (label, hist), color in zip(histories.items(), colors, strict=True):
        hist = hist[hist["step"] > 0]
        if hist.empty:
            continue
        metric = "test_acc" if "test_acc" in hist else "test_loss"
        ax_acc.plot(hist["step"], hist[metric], color=color, label=label)
        best = hist[metric].idxmax() if metric == "test_acc" else hist[metric].idxmin()
        ax_acc.plot(hist.loc[best, "step"], hist.loc[best, metric], "o", color=color, ms=5)
        ax_loss.plot(hist["step"], hist["train_loss"], color=color, ls="--")
        ax_loss.plot(hist["step"], hist["test_loss"], color=color, label=label)
        ax_norm.plot(hist["step"], hist["weight_norm"], color=color, label=label)
        if "lam_time" in hist and (hist["lam_time"] > 0).any():
            ax_lam.plot(hist["lam_time"], hist[metric], color=color, label=label)
    ax_acc.set(xscale="log", xlabel="step", ylabel="test accuracy (● = peak)")
    ax_loss.set(xscale="log", yscale="log", xlabel="step", ylabel="loss (-- train, — test)")
    ax_norm.set(xscale="log", xlabel="step", ylabel="‖θ‖")
    ax_lam.set(xscale="log", xlabel="λ-time Σ η·λ", ylabel="test accuracy")
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both", lw=0.5)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
