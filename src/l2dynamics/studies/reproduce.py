"""`l2dynamics reproduce`: every study of both papers, one command, one HTML report.

A *suite* is a list of :class:`Study` entries. Each study trains through the run store (so a
re-run reuses every finished run and only recomputes its analysis and figures), writes its
figures under ``<out>/figures/<key>/`` and returns its verdicts: claim → our measurement →
"holds" | "does not hold" | "undetermined". The driver times each study, catches a failing
study (the others go on; the report shows the error) and renders ``<out>/index.html`` and
``<out>/summary.json`` (:mod:`l2dynamics.report.html`).

Suites: ``mini`` — a faithful miniature on embedded data (MNIST-1D, digits, teacher–student),
sized for a 2-core CPU in about 15 minutes; ``paper`` — the papers' own experiments on MNIST
and CIFAR-10 files (``data_dir``), for a GPU, scaled by ``steps_scale`` and ``subset``.
Verdict thresholds are stated in each claim's text; a claim never gets "holds" from a fit
whose CI also admits the alternative.
"""

from __future__ import annotations

import json
import math
import platform
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.errors import ConfigError

SUITES = ("mini", "paper")
LG = "Lewkowycz & Gur-Ari 2020"
VL = "van Laarhoven 2017"


@dataclass
class Context:
    """Where a study writes, where it stores runs, and how it scales."""

    suite: str
    out_dir: Path
    store: Path
    workers: int = 2
    data_dir: Path | None = None
    steps_scale: float = 1.0  # paper suite: multiply every run's steps
    subset: int | None = None  # paper suite: training examples per dataset
    log: Callable[[str], None] = print
    fast: bool = True  # paper suite on CUDA: bf16 autocast (+ channels_last for image models)

    def gpu_options(self, *, image: bool) -> dict[str, Any]:
        """The GPU path's speed options for a paper-suite run (none on a CPU or with
        ``fast=False``): bf16 autocast, and channels_last for convolutional models."""
        import torch

        if self.suite != "paper" or not self.fast or not torch.cuda.is_available():
            return {}
        return {"autocast": "bf16", "channels_last": image}

    def figure(self, key: str, name: str) -> Path:
        path = self.out_dir / "figures" / key / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out_dir.resolve()))

    def steps(self, n: int) -> int:
        return max(1, int(round(n * self.steps_scale)))


@dataclass
class Study:
    key: str
    title: str
    paper: str
    suites: tuple[str, ...]
    run: Callable[[Context], dict[str, Any]]


@dataclass
class Claim:
    claim: str
    measured: str
    verdict: str  # "holds" | "does not hold" | "undetermined"
    ci: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "measured": self.measured, "verdict": self.verdict,
                "ci": self.ci}


@dataclass
class StudyOutput:
    description: str
    claims: list[Claim] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[str, Any] = field(default_factory=dict)


def _table(title: str, frame: pd.DataFrame, digits: int = 4) -> dict[str, Any]:
    def cell(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            return None if not math.isfinite(v) else float(f"{v:.{digits}g}")
        if isinstance(v, np.integer | np.bool_):
            return v.item()
        return v if isinstance(v, int | str | bool) or v is None else str(v)
    return {"title": title, "columns": [str(c) for c in frame.columns],
            "rows": [[cell(v) for v in row] for row in frame.itertuples(index=False)]}


def _slope_claim(claim: str, fit: Mapping[str, Any], expected: float) -> Claim:
    """A power-law slope against its expected value: holds iff the CI holds it and not 0."""
    from l2dynamics.analysis.fits import slope_verdict

    slope = fit.get("slope", math.nan)
    if not (isinstance(slope, float | int) and math.isfinite(slope)):
        return Claim(claim, f"no fit ({int(fit.get('points', fit.get('used', 0)) or 0)} usable "
                     "points)", "undetermined")
    verdict = slope_verdict(dict(fit), expected)
    words = {"holds": "holds", "flat": "does not hold", "other": "does not hold",
             "undetermined": "undetermined"}[verdict]
    return Claim(claim, f"slope {slope:.2f} over {int(fit.get('points', 0) or 0)} runs",
                 words, f"95 % CI [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]")


# --- Lewkowycz & Gur-Ari: t* ∝ 1/λ on MNIST-1D ---------------------------------------------


def study_tstar(ctx: Context) -> StudyOutput:
    if ctx.suite == "mini":
        # MNIST-1D's test accuracy rises to a plateau and does not fall (the full study in the
        # README: no peak in 18 of 18 runs), so t* is the plateau onset; η = 0.5 and a budget of
        # 16/(ηλ) keep every onset at least one window inside its run on a 2-core CPU.
        estimator = "onset"
        spec = {"name": "mini-tstar",
                "base": {"dataset": "mnist1d", "n_train": 1000, "n_test": 4000, "model": "fc",
                         "width": 128, "depth": 2, "optimizer": "sgd", "lr": 0.5,
                         "batch_size": 128, "eval_per_decade": 20, "norms_per_tensor": False},
                "grid": {"lam": [0.0, 1.4e-3, 2e-3, 2.8e-3, 4e-3, 5.6e-3], "seed": [0, 1]},
                "budget": {"rule": "inverse_lam", "k": 16.0, "physical": True,
                           "min_steps": 1000, "max_steps": 20000}}
        what = ("MNIST-1D (1 000 train / 4 000 test), 2×128 ReLU MLP, SGD η = 0.5, batch 128, "
                "λ ∈ {0, 1.4e-3 … 5.6e-3} (factors of √2), 2 seeds, each λ run to 16/(ηλ) "
                "steps, at most 20 000 (λ = 0: 20 000); t* = onset of the accuracy plateau")
    else:
        estimator = "smoothed"
        spec = _paper_spec(ctx, "fc_mnist_tstar")
        what = _paper_what(ctx, "MNIST, 3×1024 FC, plain SGD, η ∈ {0.05, 0.1, 0.2}, λ ∈ {0, "
                           "1e-4 … 1e-2}, 3 seeds, each λ run to 4/(ηλ) steps; t* = the "
                           "smoothed test-accuracy peak", "fc_mnist_tstar", spec)
    return _tstar_output(ctx, "tstar", spec, what, estimator)


def _tstar_output(ctx: Context, key: str, spec: dict[str, Any], what: str, estimator: str,
                  *, label: str = "") -> StudyOutput:
    """Train `spec`'s sweep through the store and judge the t* claims on its runs: the fits of
    log t* against log λ per η (`estimator` of :mod:`l2dynamics.analysis.peak`), whether the
    accuracy peaks, whether λ > 0 helps and whether the peak accuracy depends on λ."""
    from l2dynamics.analysis.tstar import (
        seed_curves,
        tstar_fits,
        tstar_summary,
        tstar_table,
        tstar_verdict,
    )
    from l2dynamics.report.figures import plot_collapse, plot_tstar
    from l2dynamics.store import RunStore
    from l2dynamics.sweep import load_sweep, run_sweep
    from l2dynamics.sweep.local import canonical, completed_runs

    plan = load_sweep(spec)
    configs = plan.configs()
    ctx.log(f"{key}{label}: {len(configs)} runs")
    result = run_sweep(plan, ctx.store, configs=configs, workers=ctx.workers)
    if result.failed:
        raise RuntimeError(f"{result.failed} runs failed: {result.errors[:2]}")
    with RunStore(ctx.store) as st:
        done = completed_runs(st)
        ids = [done[canonical(c)] for c in configs if canonical(c) in done]
        table = tstar_table(st, ids)
        curves = seed_curves(st, table)
    if table.empty:
        raise RuntimeError("no finished or diverged runs to analyse")
    tag = label.strip(" ()").replace(" ", "_").replace("=", "")
    name = f"_{tag}" if tag else ""
    summary = tstar_summary(table, estimator=estimator)
    fits = tstar_fits(table, estimator=estimator)
    verdict = tstar_verdict(table, estimator=estimator)
    figs = [(plot_tstar(table, summary, fits, ctx.figure(key, f"tstar{name}.png"),
                        estimator=estimator),
             f"{label.strip()} t* against λ (runs, seed means with CIs, the fit and a slope −1 "
             "guide) and the peak accuracy against λ".strip()),
            (plot_collapse(curves, ctx.figure(key, f"collapse{name}.png")),
             f"{label.strip()} test accuracy against step, λ·step and λ·η·step: the curves "
             "collapse in λ·step if t* ∝ 1/λ".strip())]
    claims = []
    for fit in fits.to_dict(orient="records"):
        c = _slope_claim(f"{label}t* ∝ 1/λ (slope −1 of log t* vs log λ, η = {fit['lr']:g})",
                         {**fit, "points": fit.get("used", 0)}, -1.0)
        c.measured += f"; c·η = λ·η·t* = {fit['c_eta']:.3g}"
        claims.append(c)
    for row in verdict.to_dict(orient="records")[len(fits):]:
        word = str(row["holds"])
        claims.append(Claim(label + row["claim"], row["measured"],
                            "holds" if word == "yes" else "undetermined"
                            if word.startswith("undetermined") else "does not hold"))
    fitting = table[(table["lam"] > 0) & table["fits_train"]]
    if len(fitting):
        falls = int((~fitting["censored_smoothed"]).sum())
        claims.append(Claim(
            f"{label}test accuracy peaks at t* (the smoothed accuracy falls ≥ 0.01 after its "
            "maximum inside the budget)",
            f"{falls} of {len(fitting)} fitting runs (λ > 0) show such a peak",
            "holds" if falls > len(fitting) / 2 else "does not hold"))
    positive = summary[(summary["lam"] > 0) & summary["all_fit_train"]]
    if len(positive) >= 2:
        spread = float(positive["peak_acc"].max() - positive["peak_acc"].min())
        noise = float(positive["test_noise_se"].mean())
        claims.append(Claim(
            f"{label}performance at t* hardly depends on λ (peak accuracies of the λ that fit "
            "their data within 3 test-noise SE of each other)",
            f"range {spread:.4f} over {len(positive)} λ; test-noise SE {noise:.4f}",
            "holds" if spread <= 3 * noise else "does not hold"))
    shown = summary[["lr", "lam", "seeds", "tstar", "tstar_low", "tstar_high", "c",
                     "peak_acc", "all_fit_train", "any_peak_at_end"]]
    return StudyOutput(what, claims, figs,
                       [_table(f"{label}t* and peak accuracy per λ".strip(), shown)],
                       {"sweep": spec})




# --- the paper suite: the papers' own experiments from configs/paper/ ---------------------

PAPER_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "paper"


def _paper_base(ctx: Context, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A paper config's base as a full flat config: the user's data folder, ``subset`` training
    examples, ``steps`` × ``steps_scale`` (when the base fixes steps) and the GPU options."""
    from l2dynamics.config import flatten

    flat = flatten(raw)
    flat["data_dir"] = str(ctx.data_dir)
    if ctx.subset:
        flat["n_train"] = int(ctx.subset)
    if "steps" in flat:
        flat["steps"] = ctx.steps(int(flat["steps"]))
    flat.update(ctx.gpu_options(image=flat.get("dataset") == "cifar10"))
    return flat


def _full_base(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec`'s base as a complete flat config without its grid keys (for the norms studies,
    which lay their own grid over a base)."""
    from l2dynamics.config import make_config

    full = make_config(dict(spec["base"])).to_dict()
    for key in ("name", *spec.get("grid", {})):
        full.pop(key, None)
    return full


def _paper_spec(ctx: Context, name: str) -> dict[str, Any]:
    """The sweep of ``configs/paper/<name>.yaml`` at the context's scale: budgets (``k``,
    ``min_steps``, ``max_steps``) or fixed steps times ``steps_scale``."""
    import yaml

    path = PAPER_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"the paper suite reads {path}, which is missing; run it from a "
                          "source checkout of l2dynamics")
    spec = yaml.safe_load(path.read_text())
    spec["base"] = _paper_base(ctx, spec.get("base", {}))
    budget = spec.get("budget")
    if budget:
        budget["k"] = float(budget["k"]) * ctx.steps_scale
        for key in ("min_steps", "max_steps"):
            if key in budget:
                budget[key] = ctx.steps(int(budget[key]))
    return spec


def _paper_what(ctx: Context, text: str, name: str, spec: Mapping[str, Any]) -> str:
    """A paper study's description: `text`, its config file and the scale it ran at (read
    from the scaled `spec`, so the speed options named are the ones its runs used)."""
    scale = []
    if ctx.steps_scale != 1.0:
        scale.append(f"steps × {ctx.steps_scale:g}")
    if ctx.subset:
        scale.append(f"{ctx.subset} training examples")
    base = spec["base"]
    if base.get("autocast", "none") != "none":
        scale.append(f"{base['autocast']} autocast")
    if base.get("channels_last"):
        scale.append("channels_last")
    return (f"{text} (configs/paper/{name}.yaml" + (f"; {', '.join(scale)}" if scale else "")
            + ")")


def _paper_tstar_study(key: str, config: str, text: str) -> Callable[[Context], StudyOutput]:
    """A paper-suite t* study: the sweep of ``configs/paper/<config>.yaml``, judged by the
    smoothed accuracy peak (the papers' t*)."""
    def run(ctx: Context) -> StudyOutput:
        spec = _paper_spec(ctx, config)
        return _tstar_output(ctx, key, spec, _paper_what(ctx, text, config, spec), "smoothed")
    return run


study_wrn_tstar = _paper_tstar_study(
    "wrn_tstar", "wrn_cifar10_tstar",
    "CIFAR-10 without augmentation, WRN-28-10, plain SGD at batch 1024, η ∈ {0.05 … 0.4}, λ ∈ "
    "{1e-4 … 1e-2}, each run to 4.8/(ηλ) steps (the released code's 0.1/(ηλ) epochs); t* = the "
    "smoothed accuracy peak")
study_wrn_fig1a = _paper_tstar_study(
    "wrn_fig1a", "wrn_cifar10_fig1a",
    "CIFAR-10 with augmentation, WRN-28-10, SGD + momentum 0.9, η = 0.2 with ÷5 steps at "
    "30/60/90 %, batch 1024, λ ∈ {5e-5 … 5e-3}, each run to 0.96/(ηλ) steps (Figure 1a: "
    "accuracy at a budget ∝ 1/λ)")


def study_cnn_tstar(ctx: Context) -> StudyOutput:
    """The CNN without and with BN on one λ grid: each analysed on its own."""
    spec = _paper_spec(ctx, "cnn_cifar10_tstar")
    norms = spec["grid"].pop("norm")
    merged = StudyOutput(_paper_what(ctx, "CIFAR-10, the CNN without and with BN, plain SGD "
                                     "η = 0.05, batch 256, λ ∈ {0, 1e-4 … 1e-2}, 2 seeds, each "
                                     "run to 4/(ηλ) steps", "cnn_cifar10_tstar", spec))
    for norm in norms:
        part_spec = {**spec, "name": f"{spec['name']}-{norm}",
                     "base": {**spec["base"], "norm": norm}}
        label = "(no BN) " if norm == "none" else f"({norm.upper()}) "
        part = _tstar_output(ctx, "cnn_tstar", part_spec, merged.description, "smoothed",
                             label=label)
        merged.claims += part.claims
        merged.figures += part.figures
        merged.tables += part.tables
        merged.configs[norm] = part_spec
    return merged


def study_convnet4_grid(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_eta_lam_grid
    from l2dynamics.studies.norms import collapse_summary, eta_lam_grid

    spec = _paper_spec(ctx, "convnet4_cifar10_adam_grid")
    grid = spec["grid"]
    table = eta_lam_grid("adam", grid["lr"], grid["lam"], store=ctx.store,
                         base=_full_base(spec), steps=spec["base"]["steps"],
                         seeds=tuple(grid.get("seed", (0,))),
                         workers=ctx.workers, progress=ctx.log)
    summary = collapse_summary(table)
    fig = plot_eta_lam_grid(table, summary, ctx.figure("convnet4_grid", "adam.png"))
    claims = []
    fit = summary.get("fit_gbar_normalized")
    if fit:
        claims.append(Claim(
            "Adam: equilibrium effective LR × ‖ḡ‖^a ∝ (η²λ)^⅓ (both exponents' CIs hold it)",
            f"η^{fit['p']:.3f} λ^{fit['q']:.3f} over {fit['n']} relaxed runs",
            "holds" if fit["p_holds"] and fit["q_holds"] else "does not hold",
            f"p [{fit['ci_p'][0]:.3f}, {fit['ci_p'][1]:.3f}], q [{fit['ci_q'][0]:.3f}, "
            f"{fit['ci_q'][1]:.3f}]"))
    else:
        claims.append(Claim("Adam: equilibrium effective LR ∝ (η²λ)^⅓",
                            str(summary.get("fit_gbar_normalized_error", "no fit")),
                            "undetermined"))
    r2 = summary["collapse_r2"]
    claims.append(Claim(
        "test error is a function of the effective LR (R² of the predicted combination ≥ 0.5 "
        "and above η's and λ's alone)",
        f"R² combination {r2['predicted_combination']:.2f}, η {r2['lr_alone']:.2f}, λ "
        f"{r2['lam_alone']:.2f}",
        "holds" if r2["predicted_combination"] >= max(0.5, r2["lr_alone"], r2["lam_alone"])
        else "does not hold"))
    return StudyOutput(
        _paper_what(ctx, "CIFAR-10 with augmentation, 4-layer ConvNet with BN, Adam + coupled "
                    "L2 on the conv weights over a 4×5 (η, λ) grid", "convnet4_cifar10_adam_grid",
                    spec),
        claims, [(fig, "test error over the η×λ grid, the collapse and the effective LR")],
        [_table("ConvNet4 grid", table.drop(columns=["run_id", "optimizer"]))], {"sweep": spec})


def study_convnet4_projection(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_projection_study
    from l2dynamics.studies.norms import projection_vs_l2

    spec = _paper_spec(ctx, "convnet4_cifar10_adam_projection")
    base, grid = _full_base(spec), spec["grid"]
    lams = tuple(grid["lam"])
    table = projection_vs_l2(lams, base=base, optimizer=base["optimizer"], lr=base["lr"],
                             steps=base["steps"], seeds=tuple(grid.get("seed", (0,))),
                             store=ctx.store, workers=ctx.workers, progress=ctx.log)
    fig = plot_projection_study(table, ctx.figure("convnet4_projection", "projection.png"))
    proj = table[table["mode"] == "projected"].groupby("lam")["test_error"].mean()
    small = proj[proj.index <= 1e-2]
    spread = float(small.max() - small.min())
    n_test = int(base.get("n_test") or 10000)
    mid = float(small.mean())
    noise = math.sqrt(max(mid * (1 - mid), 1e-12) / n_test)
    claims = [Claim("with ‖w‖ = const, test error hardly depends on λ ≤ 1e-2 (range within 2 "
                    "test-noise SE)", f"range {spread:.4f}; SE {noise:.4f}",
                    "holds" if spread <= 2 * noise else "does not hold")]
    summary = table.groupby(["mode", "lam"])["test_error"].mean().unstack("mode").reset_index()
    return StudyOutput(
        _paper_what(ctx, "CIFAR-10, ConvNet4 with BN, Adam η = 1e-3: plain L2 against the ‖w‖ = "
                    "const update", "convnet4_cifar10_adam_projection", spec),
        claims, [(fig, "final test error against λ")], [_table("final test error", summary)],
        {"sweep": spec})


# --- Lewkowycz & Gur-Ari: infinite-width theory vs wide networks ------------------------------


def study_theory(ctx: Context) -> StudyOutput:
    from l2dynamics.report.theory import (
        plot_characteristic_times,
        plot_network_times,
        plot_networks,
        plot_theory_curves,
    )
    from l2dynamics.studies.theory import TheoryStudy, run_theory_study

    if ctx.suite == "mini":
        study = TheoryStudy(n_train=48, n_test=300, widths=(64, 512), lams=(1.0, 3.0, 10.0),
                            seeds=(0,), horizon=2.0, record_points=12, hessian_points=0,
                            theory_lams=tuple(np.logspace(-1, 1, 5).tolist()))
        study.kernel_points = 12
    else:
        study = TheoryStudy(hessian_points=0)
    result = run_theory_study(study, progress=ctx.log)
    figs = [(plot_theory_curves(result, ctx.figure("theory", "theory_curves.png")),
             "infinite-width gradient flow with L2: test accuracy against λ·t for the deep "
             "kernel and the linear model"),
            (plot_characteristic_times(result, ctx.figure("theory", "times.png")),
             "the theory's characteristic times against λ")]
    if not result.networks.empty:
        figs += [(plot_networks(result, ctx.figure("theory", "networks.png")),
                  "finite networks against the infinite-width flow"),
                 (plot_network_times(result, ctx.figure("theory", "network_times.png")),
                  "the networks' characteristic times against λ")]
    claims = []
    from l2dynamics.studies.theory import TIME_LABELS, VERDICT_WORDS

    for fit in result.fits.to_dict(orient="records"):
        if fit["time"] in ("t_peak", "t_loss_min") and fit["range"] == "all λ":
            claims.append(_slope_claim(f"infinite-width flow: {TIME_LABELS[fit['time']]} "
                                       "time ∝ 1/λ", fit, -1.0))
    for row in result.time_verdict.to_dict(orient="records"):
        text = str(row.get("network", ""))
        verdict = ("holds" if text.endswith(VERDICT_WORDS["holds"])
                   else "undetermined" if "undetermined" in text or text == "—"
                   else "does not hold")
        claims.append(Claim(f"network (width {row['width']}): {row['time']} ∝ 1/λ",
                            text, verdict))
    comp = result.comparisons
    if not comp.empty:
        worst = comp.groupby("width")["loss_rel_err_lazy_max"].max()
        trend = bool(np.all(np.diff(worst.to_numpy()) <= 0)) if len(worst) > 1 else None
        claims.append(Claim(
            "wider networks follow the infinite-width flow more closely (max relative test-loss "
            "error in the lazy phase falls with width)",
            ", ".join(f"width {w}: {e:.3g}" for w, e in worst.items()),
            "undetermined" if trend is None else "holds" if trend else "does not hold"))
    return StudyOutput(
        f"fc kernels (depth {study.depth}) on MNIST-1D, {study.n_train} train / {study.n_test} "
        f"test points, full batch; networks of widths {list(study.widths)} at λ "
        f"{list(study.lams)} (flow units) until λt = {study.horizon}",
        claims, figs, [_table("power laws t ∝ λ^p of the theory's times", result.fits)],
        {"theory": {k: v for k, v in vars(study).items() if not k.startswith("_")}})


# --- Lewkowycz & Gur-Ari: λ from one short run, and AutoL2 ------------------------------------


def study_tuning(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_tuning
    from l2dynamics.studies.tuning import TuningTask, run_tuning_task

    base = {"dataset": "mnist1d", "n_train": 500, "n_test": 2000, "model": "fc", "width": 64,
            "depth": 2, "lr": 0.2, "batch_size": 128, "norms_per_tensor": False,
            "eval_per_decade": 10}
    task = TuningTask("mini", base, budget=1500, grid=(1e-3, 4e-3, 1.6e-2, 6.4e-2),
                      seeds=(0, 1), evals=15,
                      description="MNIST-1D (500 train), 2×64 MLP, SGD η = 0.2, T = 1 500")
    variants = {"AutoL2 (paper rule)": {}}
    res = run_tuning_task(task, ctx.store, workers=ctx.workers, use_optuna=False,
                          autol2_variants=variants,
                          cache_dir=ctx.store.parent / "tuning_cache", log=ctx.log)
    fig = plot_tuning(res, ctx.figure("tuning", "tuning.png"))
    methods = {m["name"]: m for m in res["methods"]}
    grid = methods["grid best"]
    claims = []
    pred = res["prediction"]
    pred_methods = [m for m in res["methods"] if m["name"] in res["predictions"]]
    tol = max(2 * grid["se"] if math.isfinite(grid["se"]) else 0.0, 0.005)
    if pred["ok"] and pred_methods:
        m = pred_methods[0]
        gap = grid["mean"] - m["mean"]
        claims.append(Claim(
            f"λ predicted from one short run matches the grid's best (gap ≤ max(2 SE, 0.5 "
            f"points) = {100 * tol:.2f} points)",
            f"λ_pred {pred['lam']:.3g} vs grid best {res['best_lam']:.3g}: {m['mean']:.4f} vs "
            f"{grid['mean']:.4f} ({100 * gap:+.2f} points) at {pred['compute_fraction']:.2f} "
            "runs' compute", "holds" if gap <= tol else "does not hold",
            f"λ_pred interval [{pred['lam_low']:.3g}, {pred['lam_high']:.3g}]"))
    else:
        claims.append(Claim("λ predicted from one short run matches the grid's best",
                            f"no prediction: {pred.get('message', '')}", "undetermined"))
    auto = methods.get("AutoL2 (paper rule)")
    if auto:
        gap = grid["mean"] - auto["mean"]
        claims.append(Claim(
            f"AutoL2 reaches the best constant λ's accuracy (gap ≤ {100 * tol:.2f} points)",
            f"{auto['mean']:.4f} vs {grid['mean']:.4f} ({100 * gap:+.2f} points)",
            "holds" if gap <= tol else "does not hold"))
    rows = pd.DataFrame([{"method": m["name"], "λ": ", ".join(f"{x:.3g}" for x in m["lams"]),
                          "final test acc": m["mean"], "SE": m["se"]} for m in res["methods"]])
    return StudyOutput(task.description, claims, [(fig, "final accuracy against λ (grid) with "
                                                   "each method's λ; AutoL2's curves")],
                       [_table("methods", rows)], {"task": base, "budget": task.budget})


# --- van Laarhoven: normalization ------------------------------------------------------------

_NORM_MINI = {"n_train": 2000, "n_test": 2000}


def study_norm_equilibrium(ctx: Context) -> StudyOutput:
    from l2dynamics.studies.norms import equilibrium_check

    cases = {"sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 2e-2},
             "sgdm": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "lam": 2e-1},
             "adam_l2": {"optimizer": "adam", "lr": 3e-3, "lam": 5e-2, "betas": (0.9, 0.99)},
             "adamw": {"optimizer": "adamw", "lr": 1e-3, "decoupled_wd": 2.0,
                       "betas": (0.9, 0.99)}}
    table = equilibrium_check(cases, base=_NORM_MINI, relax_times=10, measure_times=3,
                              windows=20, store=ctx.store, progress=ctx.log)
    claims = []
    for case, group in table.groupby("case", sort=False):
        nr, ar = group["norm_ratio"].to_numpy(), group["angle_ratio"].to_numpy()
        claims.append(Claim(f"{case}: equilibrium ‖w‖ within 5 % of the prediction",
                            "measured/predicted " + ", ".join(f"{x:.3f}" for x in nr),
                            "holds" if np.all(np.abs(nr - 1) <= 0.05) else "does not hold"))
        claims.append(Claim(f"{case}: RMS angular update within 2 % of the prediction",
                            "measured/predicted " + ", ".join(f"{x:.3f}" for x in ar),
                            "holds" if np.all(np.abs(ar - 1) <= 0.02) else "does not hold"))
    shown = table[["case", "tensor", "steps", "relaxation_steps", "norm", "pred_norm",
                   "norm_ratio", "angle_rms", "pred_angle", "angle_ratio"]]
    return StudyOutput("BN MLP (2×128) on MNIST-1D, L2 on the weights only; each case runs 10 "
                       "relaxation times, then is measured over 3 more", claims, [],
                       [_table("measured / predicted at equilibrium", shown)], {"cases": cases})


def study_norm_traces(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_norm_traces
    from l2dynamics.studies.norms import norm_traces

    traces = norm_traces((0.0, 5e-3, 2e-2), base=_NORM_MINI, steps=3000, store=ctx.store,
                         progress=ctx.log)
    tensor = sorted({r["tensor"] for r in traces["runs"]})[0]
    fig = plot_norm_traces(traces, ctx.figure("norm_traces", "traces.png"), tensor=tensor)
    claims = []
    for run in traces["runs"]:
        if run["tensor"] != tensor:
            continue
        ratio = run["norm"][-1] / run["pred_norm"][-1]
        law = "growth law ‖w‖⁴ = ‖w₀‖⁴ + 2η²Σ‖ḡ‖²" if run["lam"] == 0 else "equilibrium norm"
        claims.append(Claim(f"λ = {run['lam']:g}: final ‖w‖ follows the {law} (within 5 %)",
                            f"measured/predicted {ratio:.3f} at step {run['step'][-1]:.0f}",
                            "holds" if abs(ratio - 1) <= 0.05 else "does not hold"))
    return StudyOutput("SGD η = 0.1 on the BN MLP for λ ∈ {0, 5e-3, 2e-2}, 3 000 steps",
                       claims, [(fig, f"‖w‖, effective LR and angular update of {tensor} "
                                      "against step, with the predictions")], [],
                       {"lams": [0.0, 5e-3, 2e-2], "steps": 3000})


def study_norm_grid(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_eta_lam_grid
    from l2dynamics.studies.norms import GRIDS, collapse_summary, eta_lam_grid

    grids = {"sgd": {"lrs": (0.1, 0.3, 1.0), "lams": (3e-3, 1e-2, 3e-2), "steps": 2000},
             "adam": {"lrs": (3e-3, 1e-2, 3e-2), "lams": (1e-2, 3e-2, 1e-1), "steps": 2000}}
    claims, figs, tables = [], [], []
    for opt, g in grids.items():
        table = eta_lam_grid(opt, g["lrs"], g["lams"], store=ctx.store, steps=g["steps"],
                             base={**_NORM_MINI, **GRIDS[opt]["base"]}, workers=ctx.workers,
                             progress=ctx.log)
        summary = collapse_summary(table)
        figs.append((plot_eta_lam_grid(table, summary, ctx.figure("norm_grid", f"{opt}.png")),
                     f"{opt}: test error over the η×λ grid with iso-effective-LR lines, the "
                     "collapse against the predicted combination, and the effective LR"))
        fit = summary.get("fit_gbar_normalized")
        law = "√(ηλ)" if opt == "sgd" else "(η²λ)^⅓"
        if fit:
            ok = fit["p_holds"] and fit["q_holds"]
            claims.append(Claim(
                f"{opt}: equilibrium effective LR × ‖ḡ‖^a ∝ {law} (both exponents' CIs hold "
                "the prediction)", f"η^{fit['p']:.3f} λ^{fit['q']:.3f} over {fit['n']} relaxed "
                "runs" + (f"; supports {fit['supports']}" if "supports" in fit else ""),
                "holds" if ok else "does not hold",
                f"p [{fit['ci_p'][0]:.3f}, {fit['ci_p'][1]:.3f}], q [{fit['ci_q'][0]:.3f}, "
                f"{fit['ci_q'][1]:.3f}]"))
        else:
            claims.append(Claim(f"{opt}: equilibrium effective LR ∝ {law}",
                                summary.get("fit_gbar_normalized_error", "no fit"),
                                "undetermined"))
        r2 = summary["collapse_r2"]
        claims.append(Claim(
            f"{opt}: test error is a function of the effective LR (R² of the predicted "
            "combination ≥ 0.5 and above η's and λ's alone)",
            f"R² combination {r2['predicted_combination']:.2f}, η {r2['lr_alone']:.2f}, λ "
            f"{r2['lam_alone']:.2f}",
            "holds" if r2["predicted_combination"] >= max(0.5, r2["lr_alone"],
                                                          r2["lam_alone"]) else "does not hold"))
        tables.append(_table(f"{opt} grid", table.drop(columns=["run_id", "optimizer"])))
    return StudyOutput("BN MLP on MNIST-1D, 3×3 (η, λ) grids for SGD + L2 and Adam + L2 "
                       "(β₂ = 0.99), 2 000 steps; exponents fitted over runs ≥ 10 relaxation "
                       "times long", claims, figs, tables, {"grids": grids})


def study_norm_projection(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_projection_study
    from l2dynamics.studies.norms import projection_vs_l2

    lams = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
    table = projection_vs_l2(lams, base=_NORM_MINI, steps=1500, seeds=(0,), store=ctx.store,
                             workers=ctx.workers, progress=ctx.log)
    fig = plot_projection_study(table, ctx.figure("norm_projection", "projection.png"))
    proj = table[table["mode"] == "projected"].groupby("lam")["test_error"].mean()
    small = proj[proj.index <= 1e-2]
    spread = float(small.max() - small.min())
    noise = math.sqrt(0.35 * 0.65 / _NORM_MINI["n_test"])
    claims = [Claim("with ‖w‖ = const, test error hardly depends on λ ≤ 1e-2 (range within 2 "
                    "test-noise SE)", f"range {spread:.4f}; SE {noise:.4f}",
                    "holds" if spread <= 2 * noise else "does not hold")]
    summary = table.groupby(["mode", "lam"])["test_error"].mean().unstack("mode").reset_index()
    return StudyOutput("Adam η = 1e-3 on the BN MLP, 1 500 steps, plain L2 vs the ‖w‖ = const "
                       "update", claims, [(fig, "final test error against λ")],
                       [_table("final test error", summary)], {"lams": list(lams)})


def study_norm_bridge(ctx: Context) -> StudyOutput:
    from l2dynamics.report.figures import plot_bn_bridge
    from l2dynamics.studies.norms import bn_bridge

    res = bn_bridge((5e-3, 1e-2, 2e-2, 4e-2), store=ctx.store, steps=2500, seeds=(0,),
                    workers=ctx.workers, progress=ctx.log)
    fig = plot_bn_bridge(res, ctx.figure("norm_bridge", "bridge.png"))
    claims = []
    for norm, part in res["norms"].items():
        fit = dict(part["fit"])
        claims.append(_slope_claim(f"CNN {'without' if norm == 'none' else 'with'} BN: "
                                   "t* ∝ 1/λ", {**fit, "points": fit.get("used", 0)}, -1.0))
    return StudyOutput("digits (8×8, 600 train), 2-layer CNN of 16 channels without and with "
                       "BN, SGD η = 0.1, λ ∈ {5e-3 … 4e-2}, 2 500 steps", claims,
                       [(fig, "t* and peak accuracy against λ, with and without BN")], [],
                       {"lams": res["lams"], "steps": res["steps"]})


STUDIES: list[Study] = [
    Study("tstar", "t* ∝ 1/λ and the collapse", LG, SUITES, study_tstar),
    Study("theory", "Infinite-width theory vs wide networks", LG, ("mini",), study_theory),
    Study("tuning", "λ from one short run, and AutoL2", LG, ("mini",), study_tuning),
    Study("norm_equilibrium", "Equilibrium norms and angular updates", VL, ("mini",),
          study_norm_equilibrium),
    Study("norm_traces", "Norm and effective-LR traces", VL, ("mini",), study_norm_traces),
    Study("norm_grid", "The η×λ grid and the effective-LR collapse", VL, ("mini",),
          study_norm_grid),
    Study("norm_projection", "The ‖w‖ = const update", VL, ("mini",), study_norm_projection),
    Study("norm_bridge", "Bridge: t* with and without BN", VL, ("mini",), study_norm_bridge),
    Study("wrn_tstar", "WRN-28-10: t* ∝ 1/λ for several η", LG, ("paper",), study_wrn_tstar),
    Study("wrn_fig1a", "WRN-28-10: accuracy at a budget ∝ 1/λ (Figure 1a)", LG, ("paper",),
          study_wrn_fig1a),
    Study("cnn_tstar", "CNN with and without BN: t* ∝ 1/λ", LG, ("paper",), study_cnn_tstar),
    Study("convnet4_grid", "ConvNet4 + Adam: the η×λ grid", VL, ("paper",), study_convnet4_grid),
    Study("convnet4_projection", "ConvNet4 + Adam: the ‖w‖ = const update", VL, ("paper",),
          study_convnet4_projection),
]


def _versions() -> dict[str, str]:
    import torch

    import l2dynamics

    return {"l2dynamics": getattr(l2dynamics, "__version__", "dev"), "torch": torch.__version__,
            "python": platform.python_version()}


def reproduce(suite: str = "mini", out_dir: str | Path = "report", *,
              store: str | Path | None = None, workers: int = 2,
              only: Sequence[str] | None = None, data_dir: str | Path | None = None,
              steps_scale: float = 1.0, subset: int | None = None, fast: bool = True,
              command: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every study of `suite` (or the keys in `only`), write the report; the summary."""
    from l2dynamics.report.html import render_report

    if suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)} (got {suite!r})")
    if suite == "paper" and data_dir is None:
        raise ConfigError("the paper suite needs --data-dir (MNIST and CIFAR-10 files)")
    if not (math.isfinite(steps_scale) and steps_scale > 0):
        raise ConfigError(f"steps_scale must be finite and > 0 (got {steps_scale!r})")
    chosen = [s for s in STUDIES if suite in s.suites]
    if only:
        unknown = sorted(set(only) - {s.key for s in chosen})
        if unknown:
            raise ConfigError(f"unknown studies {unknown} for suite {suite!r}; available: "
                              f"{', '.join(s.key for s in chosen)}")
        chosen = [s for s in chosen if s.key in only]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(store) if store is not None else out / "runs.sqlite"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = Context(suite, out, store_path, workers, Path(data_dir) if data_dir else None,
                  steps_scale, subset, log, fast)
    command = command or f"l2dynamics reproduce --suite {suite} --out {out}"
    entries, start = [], time.perf_counter()
    for study in chosen:
        log(f"== {study.key}: {study.title}")
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"key": study.key, "title": study.title, "paper": study.paper,
                                 "command": f"{command} --only {study.key}"}
        try:
            res = study.run(ctx)
        except Exception as exc:  # one failing study must not sink the report
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                         description="", claims=[], figures=[], tables=[], configs={})
            log(traceback.format_exc())
        else:
            entry.update(status="ok", error=None, description=res.description,
                         claims=[c.to_dict() for c in res.claims],
                         figures=[{"path": ctx.rel(p), "caption": cap}
                                  for p, cap in res.figures],
                         tables=res.tables, configs=json.loads(json.dumps(res.configs,
                                                                          default=str)))
        entry["wall_seconds"] = time.perf_counter() - t0
        log(f"   {study.key}: {entry['status']} in {entry['wall_seconds']:.0f} s")
        entries.append(entry)
    summary = {"suite": suite, "created": datetime.now(UTC).isoformat(
        timespec="seconds"), "machine": f"{platform.node()} ({platform.machine()}, "
        f"{_cpu_count()} CPUs)", "wall_seconds": time.perf_counter() - start,
        "command": command, "versions": _versions(), "studies": entries,
        "runs": store_runs(store_path)}
    render_report(summary, out)
    return summary


def store_runs(store: Path) -> dict[str, Any]:
    """Run counts by status in `store`, and every run that did not finish cleanly (diverged:
    with the step and cause; failed: with the error), for the report's "Runs" section."""
    from l2dynamics.store import RunStore

    if not Path(store).is_file():
        return {"counts": {}, "problems": []}
    counts: dict[str, int] = {}
    problems = []
    with RunStore(store) as st:
        for rec in st.list_runs():
            status = rec["status"]
            counts[status] = counts.get(status, 0) + 1
            if status not in ("diverged", "failed"):
                continue
            cfg = rec.get("config") or {}
            problems.append({
                "id": rec["id"], "status": status, "name": rec.get("name"),
                "optimizer": cfg.get("optimizer"), "lr": cfg.get("lr"), "lam": cfg.get("lam"),
                "seed": cfg.get("seed"), "step": rec.get("diverged_step"),
                "cause": (rec.get("diverged_cause") if status == "diverged"
                          else str(rec.get("error") or "")[:300])})
    return {"counts": counts, "problems": problems}


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
