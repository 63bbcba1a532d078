"""Figures of training runs (matplotlib, Agg backend; written atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from l2dynamics.report.inventory import INVENTORY_KEY, figure_inventory  # noqa: E402
from l2dynamics.report.ticks import readable_log_ticks  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save through a temporary file and rename, so a crash never leaves half an image. A PNG
    carries the figure's :func:`figure_inventory` in its ``l2dynamics-panels`` text chunk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        readable_log_ticks(fig)
        metadata = ({INVENTORY_KEY: json.dumps(figure_inventory(fig), ensure_ascii=False)}
                    if path.suffix.lower() == ".png" else None)
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=metadata)
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
                      fmt="o", color=color, ms=4, capsize=2, label=f"η={lr:.3g}")
        fit = fits[fits["lr"] == lr]
        if not fit.empty and np.isfinite(fit["slope"].iloc[0]):
            lam = np.geomspace(s["lam"].min(), s["lam"].max(), 50)
            ax_t.plot(lam, fit["prefactor"].iloc[0] * lam ** fit["slope"].iloc[0], "-",
                      color=color, lw=1, label=f"fit slope {fit['slope'].iloc[0]:.2f}")
        ax_acc.errorbar(s["lam"], s["peak_acc"], yerr=[s["peak_acc"] - s["peak_acc_low"],
                                                       s["peak_acc_high"] - s["peak_acc"]],
                        fmt="o-", color=color, ms=4, capsize=2, label=f"η={lr:.3g}")
        zero = summary[(summary["lr"] == lr) & (summary["lam"] == 0)]
        if not zero.empty:
            ax_acc.axhline(zero["peak_acc"].iloc[0], color=color, ls="--", lw=1,
                           label=f"λ=0, η={lr:.3g}")
    positive = summary[summary["lam"] > 0]
    if not positive.empty:
        lam = np.geomspace(positive["lam"].min(), positive["lam"].max(), 50)
        anchor = positive.iloc[len(positive) // 2]
        ax_t.plot(lam, anchor["tstar"] * anchor["lam"] / lam, "k:", lw=1, label="slope −1")
    ax_t.set(xscale="log", yscale="log", xlabel="λ", ylabel=f"t* ({estimator}, steps)",
             title="peak time (× = under-fitting or censored, not fitted)")
    methods = ", ".join(sorted({f"{m}, n = {n}" for m, n in
                                zip(summary.get("interval", []), summary.get("seeds", []),
                                    strict=False)}))
    ax_acc.set(xscale="log", xlabel="λ", ylabel="peak test accuracy (seed mean)",
               title=f"bars: {methods}" if methods else None)
    for ax in (ax_t, ax_acc):
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_collapse(curves: pd.DataFrame, path: str | Path, *, metric: str = "test accuracy"
                  ) -> Path:
    """The collapse figure: `metric` (seed mean ± 1 SE band) against step, λ·step and
    λ·η·step, one color per λ and one line style per η; λ = 0 appears only in the first.

    Each panel's title states what was measured on it: how many decades the maxima of the
    λ > 0 curves span on that axis (curves that collapse have their maxima at one place)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    lams = sorted(curves["lam"].unique())
    colors = dict(zip(lams, plt.cm.viridis(np.linspace(0, 0.9, max(1, len(lams)))),
                      strict=True))
    styles = dict(zip(sorted(curves["lr"].unique()), ["-", "--", ":", "-."] * 4, strict=False))
    for (lr, lam), d in curves.groupby(["lr", "lam"]):
        d = d[d["step"] > 0].sort_values("step")
        color, style = colors[lam], styles[lr]
        label = f"λ={lam:.3g}" + (f", η={lr:.3g}" if len(styles) > 1 else "")
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
    for ax, x in zip(axes, ("step", "lam_step", "lam_lr_step"), strict=True):
        span = maxima_span(curves, x)
        ax.set_title("maxima of the λ > 0 curves span "
                     + (f"{span:.2f} decades" if np.isfinite(span) else "— (fewer than 2 λ)"),
                     fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def maxima_span(curves: pd.DataFrame, x: str) -> float:
    """Decades spanned, on axis `x`, by the positions of the maxima of the seed-mean curves of
    the λ > 0 groups (NaN with fewer than two): 0 when the curves peak at one place."""
    at = [float(d.loc[d["mean"].idxmax(), x]) for (_, lam), d in curves.groupby(["lr", "lam"])
          if lam > 0 and not d.empty and d["mean"].notna().any()]
    at = [v for v in at if v > 0]
    if len(at) < 2:
        return float("nan")
    return float(np.log10(max(at)) - np.log10(min(at)))


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
    method = getattr(prediction, "interval_method", "")
    how = f" ({method}, {getattr(prediction, 'seeds', 0)} seeds)" if method else ""
    title = (f"λ_pred = {prediction.lam:.3g} [{prediction.lam_low:.3g}, "
             f"{prediction.lam_high:.3g}]{how} for T = {prediction.budget}"
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
               "EMA": ("tab:green", "s"), "Optuna": ("tab:purple", "D"),
               "selector": ("tab:blue", "P")}
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
    # the AutoL2 variants are the methods with learning curves (whatever a suite names them:
    # the mini suite's "AutoL2 (paper rule)" was missed by a name test)
    autol2 = [m for m in result["methods"] if m.get("curves")]
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
        label = f"λ = {run['lam']:.3g}"
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
    ax.set(xscale="log", xlabel=f"λ (λ = 0 drawn at {zero_at:.3g})", ylabel="final test error",
           title="test error vs λ: plain L2 and the ‖w‖ = const update")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _powers(p: float, q: float, fmt: str) -> str:
    """η^p·λ^q with rendered superscripts (matplotlib mathtext), e.g. η^0.5·λ^0.5."""
    return rf"$\eta^{{{p:{fmt}}}}\cdot\lambda^{{{q:{fmt}}}}$"


def plot_eta_lam_grid(table: pd.DataFrame, summary: Mapping, path: str | Path) -> Path:
    """Study 2, one optimizer: (a) final test error over the (η, λ) grid (seed mean) with lines
    of constant predicted effective LR η^p·λ^q; (b) test error against that combination (the
    collapse: one curve if it holds); (c) the measured late effective LR against it, the runs
    in the exponent fit filled, with the fitted power law."""
    p0, q0 = summary["predicted_p"], summary["predicted_q"]
    opt = summary["optimizer"]
    ok = table[table["status"] == "finished"]
    grid = table.groupby(["lam", "lr"])["test_error"].mean().unstack("lr")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    lrs, lams = grid.columns.to_numpy(float), grid.index.to_numpy(float)
    mesh = ax.pcolormesh(np.arange(len(lrs) + 1), np.arange(len(lams) + 1), grid.to_numpy(),
                         cmap="viridis_r", shading="flat")
    fig.colorbar(mesh, ax=ax, label="final test error")
    for i in range(len(lams)):
        for j in range(len(lrs)):
            value = grid.iloc[i, j]
            ax.text(j + 0.5, i + 0.5, f"{value:.3f}", ha="center", va="center", fontsize=7,
                    color="w" if mesh.norm(value) > 0.5 else "k")
    # iso-lines η^p λ^q = const in index coordinates (log-spaced axes, linear interpolation)
    lx = np.log(lrs)
    ly = np.log(lams)
    xs = np.linspace(lx.min(), lx.max(), 50)
    for level in np.linspace(p0 * lx.min() + q0 * ly.min(), p0 * lx.max() + q0 * ly.max(), 7):
        ys = (level - p0 * xs) / q0
        inside = (ys >= ly.min()) & (ys <= ly.max())
        if inside.sum() > 1:
            ax.plot(np.interp(xs[inside], lx, np.arange(len(lrs))) + 0.5,
                    np.interp(ys[inside], ly, np.arange(len(lams))) + 0.5, "w--", lw=0.8)
    ax.set_xticks(np.arange(len(lrs)) + 0.5, [f"{v:.3g}" for v in lrs])
    ax.set_yticks(np.arange(len(lams)) + 0.5, [f"{v:.3g}" for v in lams])
    ax.set(xlabel="η", ylabel="λ",
           title=f"{opt}: test error; dashed: {_powers(p0, q0, '.2g')} = const")
    combo = ok["lr"] ** p0 * ok["lam"] ** q0
    ax = axes[1]
    sc = ax.scatter(combo, ok["test_error"], c=np.log10(ok["lr"]), cmap="plasma", s=30)
    fig.colorbar(sc, ax=ax, label="log10 η")
    r2 = summary["collapse_r2"]
    ax.set(xscale="log", xlabel=f"{_powers(p0, q0, '.2g')} (predicted effective-LR scale)",
           ylabel="final test error",
           title=f"collapse R²: combination {r2['predicted_combination']:.2f}, "
                 f"η {r2['lr_alone']:.2f}, λ {r2['lam_alone']:.2f}")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax = axes[2]
    used = (ok["in_fit"] if "in_fit" in ok else ok["relaxed"]).to_numpy(bool)
    ax.scatter(combo[used], ok["eff_lr"][used], c="k", s=25,
               label="in the fit (relaxed ≥ 10τ" + (", small angle)" if "in_fit" in ok else ")"))
    ax.scatter(combo[~used], ok["eff_lr"][~used], facecolors="none", edgecolors="gray",
               s=25, label="not in the fit")
    column = "normalizer" if "normalizer" in ok else "gbar"
    if summary.get("fit_gbar_normalized") and column in ok:
        power = 1.0 if opt == "sgd" else 1.0 / 3.0
        norm_eff = ok["eff_lr"] * ok[column] ** power
        scale = np.exp(np.mean(np.log(ok["eff_lr"][used]) - np.log(norm_eff[used])))
        g = summary["fit_gbar_normalized"]
        what = "per-element ḡ" if opt == "adam" and column == "normalizer" else "‖ḡ‖"
        ax.scatter(combo[used], scale * norm_eff[used], marker="s", facecolors="none",
                   edgecolors="tab:green", s=25,
                   label=f"× {what}$^{{{power:.2g}}}$ (rescaled): "
                         f"{_powers(g['p'], g['q'], '.2f')}")
    fit = summary.get("fit")
    if fit:
        pts = ok[used]
        pred = np.exp(np.mean(np.log(pts["eff_lr"]) - fit["p"] * np.log(pts["lr"])
                              - fit["q"] * np.log(pts["lam"])))
        xs_ = pts["lr"] ** p0 * pts["lam"] ** q0
        ax.plot(xs_, pred * pts["lr"] ** fit["p"] * pts["lam"] ** fit["q"], "r+", ms=9,
                label=f"fit: {_powers(fit['p'], fit['q'], '.2f')} "
                      f"(q CI [{fit['ci_q'][0]:.2f}, {fit['ci_q'][1]:.2f}])")
    ax.set(xscale="log", yscale="log", xlabel=_powers(p0, q0, ".2g"),
           ylabel="measured late effective LR", title="effective LR at the end of training")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bn_bridge(result: Mapping, path: str | Path) -> Path:
    """Study 4: (a) t* against λ per run, without and with BN (hollow: censored or under-fit,
    excluded from the fit), the fitted slope and a t* ∝ 1/λ guide; (b) peak test accuracy
    against λ (seed mean); (c) the test-accuracy curves."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = {"none": "tab:blue", "bn": "tab:red"}
    for norm, res in result["norms"].items():
        table = pd.DataFrame(res["table"])
        color = colors.get(norm, "k")
        label = "no norm" if norm == "none" else norm.upper()
        if not table.empty:
            used = (~table["censored_smoothed"].astype(bool)) & table["fits_train"].astype(bool)
            slope = res["fit"].get("slope", np.nan)
            fitted = (f"slope {slope:.2f}" if np.isfinite(slope)
                      else f"no slope: {int(used.sum())} usable runs")
            axes[0].scatter(table["lam"][used], table["tstar_smoothed"][used], color=color,
                            s=30, label=f"{label}: {fitted} ({res['verdict']})")
            axes[0].scatter(table["lam"][~used], table["tstar_smoothed"][~used],
                            facecolors="none", edgecolors=color, s=30)
            fit = res["fit"]
            if fit and np.isfinite(fit.get("slope", np.nan)):
                xs = np.array(sorted(table["lam"][used]))
                axes[0].plot(xs, fit["prefactor"] * xs ** fit["slope"], color=color, lw=1)
        summary = pd.DataFrame(res["summary"])
        if not summary.empty:
            axes[1].errorbar(summary["lam"], summary["peak_acc"],
                             yerr=[summary["peak_acc"] - summary["peak_acc_low"],
                                   summary["peak_acc_high"] - summary["peak_acc"]],
                             fmt="o-", color=color, capsize=2, label=label)
        for i, curve in enumerate(res["curves"]):
            axes[2].plot(curve["step"], curve["test_acc"], color=color, lw=0.8,
                         alpha=0.3 + 0.7 * (curve["lam"] == max(result["lams"])),
                         label=label if i == 0 else None)
    lams = np.array(result["lams"], float)
    axes[0].plot(lams, (result["steps"] / 2) * lams.min() / lams, "k:", lw=1,
                 label="∝ 1/λ (guide)")
    for ax in axes[:2]:
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set(xscale="log", yscale="log", xlabel="λ", ylabel="t* (steps, smoothed peak)",
                title="t* vs λ (hollow: censored / under-fit)")
    axes[1].set(xscale="log", xlabel="λ", ylabel="peak test accuracy",
                title="performance at t* (seed mean, 95 % CI)")
    axes[2].set(xscale="log", xlabel="step", ylabel="test accuracy",
                title="test accuracy (darkest: largest λ)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _seed_means(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of `x`: the seed mean of `y` and its interval (analysis.intervals)."""
    from l2dynamics.analysis.intervals import seed_interval

    out = []
    for value, group in rows.groupby(x):
        ci = seed_interval(group[y].to_numpy(float))
        out.append({x: value, "mean": ci.mean, "low": ci.low, "high": ci.high})
    return pd.DataFrame(out, columns=[x, "mean", "low", "high"])


def plot_cnn_bn(runs: pd.DataFrame, lr: float, iso: list[tuple[float, float]],
                path: str | Path, *, estimator: str = "onset") -> Path:
    """The CNN ± BN study: (a) final test accuracy against λ at η = `lr`, λ = 0 drawn at the
    left edge; (b) t* against λ (runs; × censored or under-fit); (c) final test accuracy of the
    runs at equal η·λ against η. Seed means with their intervals, one color per norm."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = {"none": "tab:blue", "bn": "tab:red"}
    for norm, rows in runs.groupby("norm"):
        color, label = colors.get(norm, "k"), "no BN" if norm == "none" else "BN"
        line = rows[np.isclose(rows["lr"], lr)]
        positive = line[line["lam"] > 0]
        lam_min = positive["lam"].min() if len(positive) else 1.0
        means = _seed_means(line, "lam", "final_acc")
        means["x"] = means["lam"].where(means["lam"] > 0, lam_min / 4)
        axes[0].errorbar(means["x"], means["mean"], yerr=[means["mean"] - means["low"],
                                                          means["high"] - means["mean"]],
                         fmt="o-", color=color, capsize=2, label=label)
        ok = positive["fits_train"].astype(bool) & ~positive[f"censored_{estimator}"].astype(bool)
        axes[1].plot(positive.loc[ok, "lam"], positive.loc[ok, f"tstar_{estimator}"], "o",
                     color=color, label=label)
        axes[1].plot(positive.loc[~ok, "lam"], positive.loc[~ok, f"tstar_{estimator}"], "x",
                     color=color)
        keep = np.zeros(len(rows), bool)
        for eta, lam in iso:
            keep |= np.isclose(rows["lr"], eta) & np.isclose(rows["lam"], lam)
        iso_means = _seed_means(rows[keep], "lr", "final_acc")
        axes[2].errorbar(iso_means["lr"], iso_means["mean"],
                         yerr=[iso_means["mean"] - iso_means["low"],
                               iso_means["high"] - iso_means["mean"]],
                         fmt="o-", color=color, capsize=2, label=label)
    product = iso[0][0] * iso[0][1] if iso else float("nan")
    axes[0].set(xscale="log", xlabel="λ (λ = 0 at the left edge)", ylabel="final test accuracy",
                title=f"final accuracy against λ, η = {lr:.3g}")
    axes[1].set(xscale="log", yscale="log", xlabel="λ", ylabel=f"t* ({estimator}, steps)",
                title="t* per run (× censored or under-fit)")
    axes[2].set(xscale="log", xlabel="η (with λ = η·λ / η)", ylabel="final test accuracy",
                title=f"runs at equal η·λ = {product:.3g}")
    for ax in axes:
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(fontsize=7)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (axes[0], axes[2]):  # accuracies: intervals of few seeds may reach past [0, 1]
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)
