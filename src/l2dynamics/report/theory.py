"""Figures of the infinite-width theory study (``studies.theory``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from l2dynamics.report.figures import save_figure


def _colors(n: int) -> np.ndarray:
    return plt.cm.viridis(np.linspace(0.0, 0.9, max(1, n)))


def plot_theory_curves(result, path: str | Path) -> Path:
    """Theory test accuracy and loss vs λt for the deep flow (solid) and the linear model
    (dashed), one color per λ."""
    curves = result.theory_curves
    lams = sorted(curves["lam"].unique())
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    for lam, color in zip(lams, _colors(len(lams)), strict=True):
        for model, style in (("deep", "-"), ("linear", "--")):
            c = curves[(curves["lam"] == lam) & (curves["model"] == model)]
            label = f"λ={lam:.3g}" if model == "deep" else None
            ax_acc.plot(c["lam_t"], c["test_acc"], style, color=color, lw=1.2, label=label)
            ax_loss.plot(c["lam_t"], c["test_loss"], style, color=color, lw=1.2)
    k = result.study.k
    ax_acc.set(xscale="log", xlabel="λ·t (flow units)", ylabel="test accuracy",
               title=f"infinite width, k={k} (—) vs linear model k=1 (- -)")
    ax_loss.set(xscale="log", yscale="log", xlabel="λ·t", ylabel="test loss ½Σ(f−y)²")
    ax_acc.legend(fontsize=7, ncol=2)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_characteristic_times(result, path: str | Path) -> Path:
    """Characteristic times of the theory curves vs λ (log–log) with a slope −1 reference."""
    times = result.theory_times[result.theory_times["model"] == "deep"]
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    markers = {"t_peak": "o", "t_window_end": "s", "t_loss_min": "^", "t_loss_min_late": "v"}
    labels = {"t_peak": "accuracy peak", "t_window_end": "end of high-accuracy window",
              "t_loss_min": "test-loss minimum", "t_loss_min_late": "last test-loss minimum"}
    for name, marker in markers.items():
        ax.plot(times["lam"], times[name], marker, ls="-", lw=0.8, ms=5, label=labels[name])
    lam = times["lam"].to_numpy()
    ax.plot(lam, 1.0 / lam, "k:", lw=1, label="1/λ")
    k = result.study.k
    ax.plot(lam, 1.0 / (2 * (k - 1) * lam), "k--", lw=0.8, label="kernel decay time 1/(2(k−1)λ)")
    ax.set(xscale="log", yscale="log", xlabel="λ (flow units)", ylabel="time t (flow units)",
           title="theory: which times scale as 1/λ")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_networks(result, path: str | Path) -> Path:
    """Finite networks vs the flow from the same initial outputs: test loss and kernel norm."""
    nets = result.networks
    lams = sorted(nets["lam"].unique())
    widths = sorted(nets["width"].unique())
    fig, axes = plt.subplots(2, len(lams), figsize=(4.2 * len(lams), 7), squeeze=False)
    for j, lam in enumerate(lams):
        ax_loss, ax_kernel = axes[0, j], axes[1, j]
        for width, color in zip(widths, _colors(len(widths)), strict=True):
            d = nets[(nets["lam"] == lam) & (nets["width"] == width)]
            d = d[d["t"] > 0]
            ax_loss.plot(d["lam_t"], d["net_test_loss"], color=color, label=f"width {width}")
            ax_loss.plot(d["lam_t"], d["flow_test_loss"], color=color, ls=":", lw=1)
            ax_kernel.plot(d["lam_t"], d["kernel_ratio"], color=color, label=f"width {width}")
        d = nets[(nets["lam"] == lam) & (nets["t"] > 0)].sort_values("t")
        ax_kernel.plot(d["lam_t"], d["kernel_ratio_theory"], "k--", lw=1,
                       label=r"theory $e^{-2(k-1)\lambda t}$")
        ax_loss.set(xscale="log", yscale="log", xlabel="λ·t", ylabel="test loss",
                    title=f"λ={lam:.3g}: network (—) vs flow (···)")
        ax_kernel.set(xscale="log", yscale="log", xlabel="λ·t", ylabel="‖Θₜ‖/‖Θ₀‖")
        for ax in (ax_loss, ax_kernel):
            ax.grid(alpha=0.3, which="both", lw=0.5)
        ax_kernel.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_hessian(result, path: str | Path) -> Path:
    """Smallest eigenvalues of the regularized Hessian (flow units) divided by λ, over λt.

    The finite-width argument predicts that, once the data are fitted, the flat directions of
    the loss carry curvature ≈ λ, i.e. values near 1 here."""
    hess = result.hessian
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    if not hess.empty:
        lams = sorted(hess["lam"].unique())
        widths = sorted(hess["width"].unique())
        markers = "os^vD"
        for lam, color in zip(lams, _colors(len(lams)), strict=True):
            for width, marker in zip(widths, markers, strict=False):
                d = hess[(hess["lam"] == lam) & (hess["width"] == width) & (hess["t"] > 0)]
                smallest = d[d["rank"] == 0]
                ax.plot(smallest["lam_t"], smallest["bottom_over_lam"], marker=marker, ls="-",
                        color=color, ms=4, lw=0.8, label=f"λ={lam:.3g}, width {width}")
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="curvature = λ")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set(xscale="log", xlabel="λ·t", ylabel="smallest eigenvalue / λ",
           title="smallest curvature of the regularized loss")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_network_times(result, path: str | Path) -> Path:
    """Characteristic times of the finite networks (filled, mean and 95 % CI over seeds) and of
    the flow from their own initial outputs (open), vs λ on log–log axes, one panel per time,
    with a 1/λ reference. Times not seen inside the horizon are left out of the means."""
    labels = result.time_labels  # name → label of each characteristic time, in order
    names = tuple(labels)
    summary = result.network_time_summary
    ncols = min(3, len(names))  # readable at page width: at most 3 panels a row
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    widths = sorted(summary["width"].unique()) if not summary.empty else []
    for ax, name in zip(axes.flat, names, strict=False):
        for width, color in zip(widths, _colors(len(widths)), strict=True):
            for source, fill in (("network", color), ("flow", "none")):
                if name == "t_lazy_end" and source == "flow":
                    continue
                d = summary[(summary["width"] == width) & (summary["source"] == source)
                            & (summary["time"] == name) & np.isfinite(summary["mean"])]
                if d.empty:
                    continue
                ax.errorbar(d["lam"], d["mean"], yerr=[d["mean"] - d["low"],
                                                       d["high"] - d["mean"]],
                            fmt="o", ms=5, mfc=fill, color=color, capsize=2, lw=1,
                            label=f"w={width} {'net' if source == 'network' else 'flow'}")
        lams = np.array(sorted(summary["lam"].unique())) if not summary.empty else np.ones(1)
        anchor = summary[(summary["time"] == name) & np.isfinite(summary["mean"])]
        if not anchor.empty:
            a = anchor.iloc[len(anchor) // 2]
            ax.plot(lams, a["mean"] * a["lam"] / lams, "k:", lw=1, label="∝ 1/λ")
        ax.set_title(labels[name], fontsize=9)
        if anchor.empty:  # say why the panel is empty instead of drawing bare axes
            ax.text(0.5, 0.5, "no data: this time was not reached\nwithin the horizon by any run",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set(xscale="log", yscale="log", xlabel="λ (flow units)", ylabel="t (flow units)")
        ax.grid(alpha=0.3, which="both", lw=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)
