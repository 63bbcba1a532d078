"""Study ``tstar`` (Lewkowycz & Gur-Ari 2020): the step of peak test accuracy scales as
t* ≈ c/λ, and the accuracy curves collapse against λ·step.

Runs a sweep (or a packaged paper config) through the store and judges, per learning rate, the
slope of log t* against log λ (slope −1 expected; ``estimator`` of
:mod:`l2dynamics.analysis.peak`), whether the accuracy peaks at t*, whether some λ > 0 beats
λ = 0, whether the peak accuracy is flat in small λ, and whether the performance at t* hardly
depends on λ. With ``split_by`` (e.g. ``norm``), each value of that grid key is analysed on its
own (the CNN without and with BN). ``l2dynamics analyze tstar`` runs the same analysis on runs
already in a store (:func:`analyze_store`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2dynamics.analysis.equivalence import groups_equivalence_claim
from l2dynamics.analysis.peak import ESTIMATORS
from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import Choice, Int, PlainMapping, Real
from l2dynamics.studies.base import LG, TEXT, Context, Figure, Study, param, table

FLAT_MARGIN = 0.01  # "hardly depends on λ": no two λ differ by a point of peak accuracy or more
MINI_SWEEP = {
    "name": "mini-tstar",
    "base": {"dataset": "mnist1d", "n_train": 1000, "n_test": 4000, "model": "fc", "width": 128,
             "depth": 2, "optimizer": "sgd", "lr": 0.5, "batch_size": 128,
             "eval_per_decade": 20, "norms_per_tensor": False},
    "grid": {"lam": [0.0, 1.4e-3, 2e-3, 2.8e-3, 4e-3, 5.6e-3], "seed": [0, 1]},
    "budget": {"rule": "inverse_lam", "k": 16.0, "physical": True, "min_steps": 1000,
               "max_steps": 20000},
}
MINI_TEXT = "MNIST-1D, 2×128 ReLU MLP, plain SGD; t* = onset of the accuracy plateau"


@dataclass
class TstarParams:
    sweep: dict[str, Any] = param(
        MINI_SWEEP, PlainMapping('name: s, base: {}, grid: {lam: [0.001]}'),
        "the sweep: name, base config, grid and budget (the format of `l2dynamics sweep`)")
    config: str = param("", TEXT,
                        "a packaged paper config to run instead of `sweep` (scaled by "
                        "--steps-scale and --subset; needs --data-dir)")
    estimator: str = param("onset", Choice(ESTIMATORS), "t* estimator")
    fixed_budget: int = param(0, Int(ge=0),
                              "a second arm in which every λ runs this many steps (0: none); "
                              "its t* cannot be shaped by a budget ∝ 1/λ", unit="steps")
    split_by: str = param("", TEXT,
                          "a grid key whose values are analysed separately (e.g. norm)")
    train_threshold: float = param(0.99, Real(gt=0.0, le=1.0),
                                   "a run fits its data when its training accuracy reaches this")
    description: str = param(MINI_TEXT, TEXT, "what was run, in words, for the report (the "
                             "grid, seeds and budgets are appended from the design itself)")


@dataclass
class TstarPart:
    """The runs of one analysis: the per-run table of :func:`analysis.tstar.tstar_table` and
    the seed-mean curves (None where not loaded)."""

    label: str
    table: Any
    curves: Any = None


@dataclass
class TstarResult:
    parts: list[TstarPart]
    estimator: str
    description: str
    design: dict[str, Any] = field(default_factory=dict)


def analyze_store(store: str | Path | None, ids: list[int] | None, *, estimator: str,
                  train_threshold: float = 0.99, label: str = "", curves: bool = True,
                  description: str = "", design: dict | None = None) -> TstarResult:
    """A :class:`TstarResult` from finished runs in `store` (all, or `ids`)."""
    from l2dynamics.analysis.tstar import seed_curves, tstar_table
    from l2dynamics.errors import ConfigError
    from l2dynamics.store import RunStore

    with RunStore(store, create=False) as st:
        runs = tstar_table(st, ids, train_threshold=train_threshold)
        if runs.empty:
            raise ConfigError("no finished classification runs with test accuracy in the store")
        seed_means = seed_curves(st, runs) if curves else None
    return TstarResult([TstarPart(label, runs, seed_means)], estimator,
                       description or f"{len(runs)} stored runs", design or {})


class TstarStudy(Study):
    key = "tstar"
    title = "t* ∝ 1/λ and the collapse"
    paper = LG
    Params = TstarParams
    distributed = True

    def run(self, params: TstarParams, ctx: Context) -> TstarResult:
        from l2dynamics.studies.suite import paper_spec, paper_what

        if params.config:
            spec = paper_spec(ctx, params.config)
            what = paper_what(ctx, params.description, params.config, spec)
        else:
            spec, what = dict(params.sweep), params.description
        what = f"{what}. {describe_design(spec, params)}"
        parts, design = [], {}
        for label, part_spec in arms(spec, params.split_by, params.fixed_budget):
            parts.append(self._part(ctx, part_spec, label, params))
            design[label.strip(" ()") or "sweep"] = part_spec
        return TstarResult(parts, params.estimator, what, design)

    @staticmethod
    def _part(ctx: Context, spec: dict[str, Any], label: str, params: TstarParams
              ) -> TstarPart:
        from l2dynamics.analysis.tstar import seed_curves, tstar_table
        from l2dynamics.store import RunStore
        from l2dynamics.studies.runs import StoreProgress, refuse_unrunnable
        from l2dynamics.sweep import canonical, completed_runs, load_sweep, run_sweep

        plan = load_sweep(spec)
        configs = plan.configs()
        refuse_unrunnable(configs, ctx.store)
        ctx.log(f"{ctx.key}{label}: {len(configs)} runs")
        with StoreProgress(configs, ctx.store, lambda line: ctx.log(f"  {line}")) as progress:
            result = run_sweep(plan, ctx.store, configs=configs, workers=ctx.workers,
                               executor=ctx.executor, address=ctx.address,
                               progress=progress.runs_done)
        if result.failed:
            raise RuntimeError(f"{result.failed} runs failed: {result.errors[:2]}")
        with RunStore(ctx.store) as st:
            done = completed_runs(st)
            ids = [done[canonical(c)] for c in configs if canonical(c) in done]
            runs = tstar_table(st, ids, train_threshold=params.train_threshold)
            curves = seed_curves(st, runs)
        if runs.empty:
            raise RuntimeError("no finished or diverged runs to analyse")
        return TstarPart(label, runs, curves)

    def claims(self, result: TstarResult) -> list[Claim]:
        claims: list[Claim] = []
        for part in result.parts:  # how much L2 matters comes first
            claims += l2_effect_claims(part)
        for part in result.parts:
            claims += part_claims(part, result.estimator)
        return claims

    def figures(self, result: TstarResult, ctx: Context) -> list[Figure]:
        from l2dynamics.analysis.tstar import tstar_fits, tstar_summary
        from l2dynamics.report.figures import plot_collapse, plot_tstar

        figs = []
        for part in result.parts:
            tag = _tag(part.label)
            name, label = (f"_{tag}" if tag else ""), part.label.strip()
            est = result.estimator
            summary = tstar_summary(part.table, estimator=est)
            fits = tstar_fits(part.table, estimator=est)
            fitted = bool(fits["slope"].notna().any()) if not fits.empty else False
            figs.append(Figure(plot_tstar(part.table, summary, fits,
                                          ctx.figure(f"tstar{name}.png"), estimator=est),
                               f"{label} t* against λ (runs, seed means with their intervals — the "
                               "method and n in the right panel's title —, "
                               + ("the fit and a slope −1 guide" if fitted else
                                  "no fit: too few runs with a usable t*")
                               + ") and the peak accuracy against λ".strip(),
                               series=("η=", *(("fit slope", "slope −1") if fitted else ()))))
            if part.curves is not None and not part.curves.empty:
                figs.append(Figure(plot_collapse(part.curves, ctx.figure(f"collapse{name}.png")),
                                   f"{label} test accuracy against step, λ·step and λ·η·step: "
                                   "the curves collapse in λ·step if t* ∝ 1/λ".strip(),
                                   series=("λ=",)))
        return figs

    def tables(self, result: TstarResult) -> list[dict[str, Any]]:
        from l2dynamics.analysis.tstar import tstar_summary

        out = []
        for part in result.parts:
            summary = tstar_summary(part.table, estimator=result.estimator)
            shown = summary[["lr", "lam", "seeds", "interval", "tstar", "tstar_low",
                             "tstar_high", "c_eta", "peak_acc", "peak_acc_low", "peak_acc_high",
                             "all_fit_train", "any_peak_at_end"]]
            out.append(table(f"{part.label}t* and peak accuracy per λ".strip(), shown))
        return out

    def data(self, result: TstarResult) -> dict[str, Any]:
        from l2dynamics.analysis.tstar import tstar_fits, tstar_summary, tstar_verdict

        out: dict[str, Any] = {}
        est = result.estimator
        for part in result.parts:
            tag = _tag(part.label)
            name = f"_{tag}" if tag else ""
            out[f"tstar_runs{name}"] = part.table
            out[f"tstar_summary{name}"] = tstar_summary(part.table, estimator=est)
            out[f"tstar_fits{name}"] = tstar_fits(part.table, estimator=est)
            out[f"tstar_verdict{name}"] = tstar_verdict(part.table, estimator=est)
            if part.curves is not None:
                out[f"tstar_curves{name}"] = part.curves
        return out


def describe_design(spec: dict[str, Any], params: TstarParams) -> str:
    """The design in words, read from the sweep itself (so it cannot drift from what ran):
    data sizes, η, the λ grid, the seeds and the budgets of each arm."""
    base, grid, budget = spec.get("base", {}), spec.get("grid", {}), spec.get("budget") or {}
    lams = [float(x) for x in grid.get("lam", [base.get("lam", 0.0)])]
    seeds = grid.get("seed", [base.get("seed", 0)])
    sizes = ", ".join(f"{base[k]} {k.removeprefix('n_')}" for k in ("n_train", "n_test")
                      if base.get(k))
    text = (f"{sizes + ', ' if sizes else ''}η = {base.get('lr', '?')}, batch "
            f"{base.get('batch_size', '?')}; λ ∈ {{{', '.join(f'{x:g}' for x in lams)}}}; "
            f"{len(seeds)} seeds")
    if budget:
        text += (f"; each λ > 0 run to {budget.get('k', '?')}/(ηλ) steps within "
                 f"[{budget.get('min_steps', 1)}, {budget.get('max_steps', '∞')}]")
    elif base.get("steps"):
        text += f"; {base['steps']} steps for every λ"
    if params.fixed_budget:
        text += f"; a second arm runs every λ to {params.fixed_budget} steps"
    return text + f"; t* estimator: {params.estimator}"


def _tag(label: str) -> str:
    """A part's label as an ASCII file-name fragment: "(every λ at 20000 steps) " →
    "every_lam_at_20000_steps"."""
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", label.replace("λ", "lam")).strip("_")


def arms(spec: dict[str, Any], split_by: str = "", fixed_budget: int = 0
         ) -> list[tuple[str, dict[str, Any]]]:
    """(label, sweep) of every analysis of a t* design: the sweep itself, or one per value of
    its grid key `split_by`; and with `fixed_budget` > 0, each again with every λ run to the
    same `fixed_budget` steps (the arm whose t* no budget ∝ 1/λ can shape)."""
    from l2dynamics.errors import ConfigError

    splits: list[tuple[str, dict[str, Any]]] = [("", dict(spec))]
    if split_by:
        grid = dict(spec.get("grid", {}))
        values = grid.pop(split_by, None)
        if not values:
            raise ConfigError(f"split_by {split_by!r} is not a key of the sweep's grid")
        splits = [("(no BN) " if v == "none" else f"({str(v).upper()}) ",
                   {**spec, "grid": grid, "name": f"{spec.get('name', 'tstar')}-{v}",
                    "base": {**spec["base"], split_by: v}}) for v in values]
    out = []
    for label, part in splits:
        if spec.get("budget") or not fixed_budget:
            out.append((label, part))
        if fixed_budget:
            # the same sweep name: a run whose budget already was `fixed_budget` is reused
            fixed = {k: v for k, v in part.items() if k != "budget"}
            fixed["base"] = {**part["base"], "steps": int(fixed_budget)}
            out.append((f"{label}(every λ at {fixed_budget} steps) ", fixed))
    return out


def l2_effect_claims(part: TstarPart) -> list[Claim]:
    """How much L2 matters in one part, per η where λ = 0 and λ > 0 ran the same number of
    steps (a budget ∝ 1/λ makes final accuracies incomparable): the best λ against λ = 0 on
    final test accuracy. (Peak accuracy, what early stopping keeps, is the "some λ > 0 beats
    λ = 0" claim of :func:`part_claims`.)"""
    from l2dynamics.analysis.l2_effect import groups_by_lam, l2_effect_claim

    runs, claims = part.table, []
    for lr, at_lr in runs.groupby("lr"):
        if not (at_lr["lam"] == 0).any() or at_lr["steps"].nunique() != 1:
            continue
        steps = int(at_lr["steps"].iloc[0])
        where = f"{part.label}(η={lr:g}, {steps} steps) "
        claims.append(l2_effect_claim(groups_by_lam(at_lr, "final_acc"), label=where))
    return claims


def part_claims(part: TstarPart, estimator: str) -> list[Claim]:
    """The t* claims of one set of runs (a runs table as :func:`tstar_table` makes it): the
    slope per η with its margin and budget check, "some λ > 0 beats λ = 0", "flat in small λ"
    (:func:`analysis.tstar.tstar_claims`), whether the accuracy peaks, and whether the
    performance at t* hardly depends on λ (an equivalence test with a margin of 1 point)."""
    from l2dynamics.analysis.tstar import tstar_claims

    label, runs = part.label, part.table
    claims = tstar_claims(runs, estimator, label)
    fitting = runs[(runs["lam"] > 0) & runs["fits_train"]]
    if len(fitting):
        falls = int((~fitting["censored_smoothed"]).sum())
        claims.append(Claim(
            f"{label}test accuracy peaks at t* (the smoothed accuracy falls ≥ 0.01 after its "
            "maximum inside the budget)",
            f"{falls} of {len(fitting)} fitting runs (λ > 0) show such a peak",
            "holds" if falls > len(fitting) / 2 else "does not hold"))
    groups = {float(lam): g["peak_acc"].dropna().to_list() for lam, g in fitting.groupby("lam")}
    if len(groups) >= 2:
        claims.append(groups_equivalence_claim(
            f"{label}performance at t* hardly depends on λ (every pair of λ that fit their data "
            "within ±1 point of peak accuracy)", groups, FLAT_MARGIN, what="peak accuracy"))
    return claims
