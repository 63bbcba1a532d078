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


def plot_tstar(table: pd.DataFrame, summary: pd.DataFrame, fits: pd.DataFrame,
               path: str | Path, *, estimator: str = "smoothed") -> Path:
    """t* vs λ (log–log, one color per η, runs as dots, seed means with CIs, the fit and a
    slope −1 reference) and peak accuracy vs λ with the λ = 0 level."""
    fig, (ax_t, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    lrs = sorted(summary["lr"].unique())
    for lr, color in zip(lrs, plt.cm.viridis(np.linspace(0, 0.9, max(1, len(lrs)))),
                         strict=True):
        runs = table[(table["lr"] == lr) & (table["lam"] > 0)]
        ok = runs["fits_train"] & ~runs[f"censored_{estimator}"]
        ax_t.plot(runs.loc[ok, "lam"], runs.loc[ok, f"tstar_{estimator}"], ".", color=color,
                  alpha=0.5)
        ax_t.plot(runs.loc[~ok, "lam"], runs.loc[~ok, f"tstar_{estimator}"], "x", color=color,
                  alpha=0.5)
        s = summary[(summary["lr"] == lr) & (summary["lam"] > 0)]
        ax_t.errorbar(s["lam"], s["tstar"], yerr=[s["tstar"] - s["tstar_low"],
                                                  s["tstar_high"] - s["tstar"]],
                      fmt="o", color=color, ms=4, capsize=2, label=f"η={lr:g}")
        fit = fits[fits["lr"] == lr]
        if not fit.empty and np.isfinite(fit["slope"].iloc[0]):
            lam = np.geomspace(s["lam"].min(), s["lam"].max(), 50)
            ax_t.plot(lam, fit["prefactor"].iloc[0] * lam ** fit["slope"].iloc[0], "-",
                      color=color, lw=1, label=f"fit slope {fit['slope'].iloc[0]:.2f}")
        ax_acc.errorbar(s["lam"], s["peak_acc"], yerr=[s["peak_acc"] - s["peak_acc_low"],
                                                       s["peak_acc_high"] - s["peak_acc"]],
                        fmt="o-", color=color, ms=4, capsize=2, label=f"η={lr:g}")
        zero = summary[(summary["lr"] == lr) & (summary["lam"] == 0)]
        if not zero.empty:
            ax_acc.axhline(zero["peak_acc"].iloc[0], color=color, ls="--", lw=1,
                           label=f"λ=0, η={lr:g}")
    positive = summary[summary["lam"] > 0]
    if not positive.empty:
        lam = np.geomspace(positive["lam"].min(), positive["lam"].max(), 50)
        anchor = positive.iloc[len(positive) // 2]
        ax_t.plot(lam, anchor["tstar"] * anchor["lam"] / lam, "k:", lw=1, label="slope −1")
    ax_t.set(xscale="log", yscale="log", xlabel="λ", ylabel=f"t* ({estimator}, steps)",
             title="peak time (× = under-fitting or censored, not fitted)")
    ax_acc.set(xscale="log", xlabel="λ", ylabel="peak test accuracy (mean, 95 % CI)")
    for ax in (ax_t, ax_acc):
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_collapse(curves: pd.DataFrame, path: str | Path, *, metric: str = "test accuracy"
                  ) -> Path:
    """The collapse figure: `metric` (seed mean ± 1 SE band) against step, λ·step and
    λ·η·step, one color per λ and one line style per η. If t* ≈ c/(λη), the peaks line up in
    the right-hand panel; λ = 0 appears only in the first."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    lams = sorted(curves["lam"].unique())
    colors = dict(zip(lams, plt.cm.viridis(np.linspace(0, 0.9, max(1, len(lams)))),
                      strict=True))
    styles = dict(zip(sorted(curves["lr"].unique()), ["-", "--", ":", "-."] * 4, strict=False))
    for (lr, lam), d in curves.groupby(["lr", "lam"]):
        d = d[d["step"] > 0].sort_values("step")
        color, style = colors[lam], styles[lr]
        label = f"λ={lam:g}" + (f", η={lr:g}" if len(styles) > 1 else "")
        for ax, x in zip(axes, ("step", "lam_step", "lam_lr_step"), strict=True):
            if lam == 0 and x != "step":
                continue
            ax.plot(d[x], d["mean"], style, color=color, lw=1.2, label=label)
            ax.fill_between(d[x], d["mean"] - d["sem"], d["mean"] + d["sem"], color=color,
                            alpha=0.2, lw=0)
    for ax, label in zip(axes, ("step", "λ·step", "λ·η·step"), strict=True):
        ax.set(xscale="log", xlabel=label)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].set_ylabel(f"{metric} (seed mean ± SE)")
    axes[0].legend(fontsize=7, ncol=2)
    axes[2].set_title("collapse: t* ≈ c/(λη) lines the peaks up here")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_prediction(prediction, path: str | Path) -> Path:
    """The λ predictor's probes: test accuracy against step for every probe run (one color per
    probe λ; dashed where the run under-fitted), with its t* marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    attempts = prediction.attempts
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(attempts))))
    for attempt, color in zip(attempts, colors, strict=True):
        for i, (history, t, fits) in enumerate(zip(attempt.histories, attempt.tstars,
                                                   attempt.fits_train, strict=True)):
            h = history[history["step"] > 0]
            ax.plot(h["step"], h["test_acc"], "-" if fits else "--", color=color, lw=1,
                    label=f"probe λ={attempt.lam:.3g}" + ("" if fits else " (under-fits)")
                    if i == 0 else None)
            if np.isfinite(t):
                ax.axvline(t, color=color, lw=0.6, ls=":")
    title = (f"λ_pred = {prediction.lam:.3g} [{prediction.lam_low:.3g}, "
             f"{prediction.lam_high:.3g}] for T = {prediction.budget}"
             if prediction.ok else "no prediction: " + prediction.message[:60])
    ax.set(xscale="log", xlabel="step", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_tuning(result: Mapping, path: str | Path) -> Path:
    """One tuning-benchmark task: (left) final test accuracy against λ for the grid (mean ± SE
    over seeds; λ = 0 as a dashed line) with the λ each method chose; (right) test accuracy
    against step for the best constant λ and each AutoL2 variant (seed mean), with the target
    (the best constant's mean final accuracy)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    table = [row for row in result["methods"][0]["table"] if row["lam"] > 0]
    lams = [row["lam"] for row in table]
    ax.errorbar(lams, [row["mean"] for row in table], yerr=[row["se"] for row in table],
                fmt="o-", color="k", ms=4, capsize=2, label="grid (mean ± SE)")
    ax.axhline(result["lam0_final"], color="k", ls="--", lw=0.8, label="λ = 0")
    markers = {"prediction λ_pred (": ("tab:orange", "^"), "prediction": ("tab:red", "v"),
               "EMA": ("tab:green", "s"), "Optuna": ("tab:purple", "D")}
    for method in result["methods"][1:]:
        for key, (color, marker) in markers.items():
            if method["name"].startswith(key):
                ax.scatter(method["lams"], method["finals"], color=color, marker=marker, s=30,
                           zorder=3, label=f"{method['name']}: {method['mean']:.4f}")
                if key.startswith("prediction") and method.get("interval"):
                    ax.axvspan(*method["interval"], color=color, alpha=0.12)
                break
    ax.set(xscale="log", xlabel="λ", ylabel=f"test accuracy at T = {result['budget']}",
           title=f"{result['task']}: choosing a constant λ")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7)

    def mean_curve(curves: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        steps = np.asarray(curves[0]["steps"])
        acc = [np.interp(steps, c["steps"], c["acc"]) for c in curves]
        return steps, np.mean(acc, axis=0)

    steps, acc = mean_curve(result["const_curves"])
    bx.plot(steps[1:], acc[1:], color="k", lw=1.5, label=f"constant λ = {result['best_lam']:.3g}")
    colors = plt.cm.tab10(np.arange(10))
    autol2 = [m for m in result["methods"] if m["name"].startswith("autol2")]
    for method, color in zip(autol2, colors, strict=False):
        steps, acc = mean_curve(method["curves"])
        bx.plot(steps[1:], acc[1:], color=color, lw=1, label=method["name"])
    bx.axhline(result["target"], color="gray", ls=":", lw=0.8, label="target")
    bx.set(xscale="log", xlabel="step", ylabel="test accuracy (seed mean)",
           title="AutoL2 vs the best constant λ", ylim=(max(0.0, result["target"] - 0.25),
                                                       result["target"] + 0.05))
    bx.grid(alpha=0.3, which="both", lw=0.5)
    bx.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_norm_traces(traces: Mapping, path: str | Path, *, tensor: str | None = None) -> Path:
    """Study 1: ‖w‖, effective LR η/‖w‖² and RMS angular update against step for each λ, with
    the predictions dashed (equilibrium norm from the measured gradient, arccos(1 − ηλ), and
    for λ = 0 the ‖w‖⁴ growth law)."""
    runs = [r for r in traces["runs"] if tensor is None or r["tensor"] == tensor]
    tensor = runs[0]["tensor"]
    runs = [r for r in runs if r["tensor"] == tensor]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
    lr = traces["lr"]
    for run, color in zip(runs, colors, strict=True):
        steps = np.asarray(run["step"])
        label = f"λ = {run['lam']:g}"
        axes[0].plot(steps, run["norm"], color=color, lw=1.3, label=label)
        axes[0].plot(steps, run["pred_norm"], color=color, lw=0.9, ls="--")
        axes[1].plot(steps, run["eff_lr"], color=color, lw=1.3, label=label)
        pred = np.asarray(run["pred_norm"])
        axes[1].plot(steps, lr / pred ** 2, color=color, lw=0.9, ls="--")
        axes[2].plot(steps, run["angle_rms"], color=color, lw=1.3, label=label)
        if "pred_angle" in run:
            axes[2].axhline(run["pred_angle"], color=color, lw=0.9, ls="--")
    titles = (f"‖w‖ of {tensor} (dashed: predicted)", "effective LR η/‖w‖²",
              "RMS angular update per step (dashed: arccos(1 − ηλ))")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xscale="log", yscale="log", xlabel="step", title=title)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_projection_study(table: pd.DataFrame, path: str | Path) -> Path:
    """Study 3: final test error against λ (seed mean ± SE), plain L2 vs the ‖w‖ = const
    update; λ = 0 is drawn at the left edge of the log axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positive = table[table["lam"] > 0]["lam"]
    zero_at = positive.min() / 10 if len(positive) else 1e-6
    for mode, color in (("plain", "tab:blue"), ("projected", "tab:red")):
        sub = table[table["mode"] == mode].groupby("lam")["test_error"]
        mean, se = sub.mean(), sub.std(ddof=1) / np.sqrt(sub.count())
        x = [lam if lam > 0 else zero_at for lam in mean.index]
        ax.errorbar(x, mean.values, yerr=se.fillna(0).values, fmt="o-", color=color, capsize=2,
                    label="plain L2" if mode == "plain" else "‖w‖ = const (projected)")
    ax.set(xscale="log", xlabel=f"λ (λ = 0 drawn at {zero_at:g})", ylabel="final test error",
           title="test error vs λ: plain L2 and the ‖w‖ = const update")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
