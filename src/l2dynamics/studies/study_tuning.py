"""Study ``tuning`` (Lewkowycz & Gur-Ari 2020): the best λ for a budget from one short run, and
AutoL2, against a grid search over constant λ.

The machinery is :func:`l2dynamics.studies.tuning.run_tuning_task` (grid, the one-short-run
prediction, the EMA-timescale rule, AutoL2 variants and, optionally, Optuna). Claims: the
predicted λ reaches the grid's best final accuracy, and each AutoL2 variant does, within
max(2 SE of the grid's best, 0.5 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.intervals import seed_interval, welch_interval
from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import Bool, Choice, Floats, Int, Ints, PlainMapping, Real
from l2dynamics.studies.base import LG, TEXT, Context, Figure, Study, param, table

PRUNER_CHOICES = ("none", "median", "hyperband", "median+hyperband")
MINI_BASE = {"dataset": "mnist1d", "n_train": 500, "n_test": 2000, "model": "fc", "width": 64,
             "depth": 2, "lr": 0.2, "batch_size": 128, "norms_per_tensor": False,
             "eval_per_decade": 10}


@dataclass
class TuningParams:
    base: dict[str, Any] = param(MINI_BASE, PlainMapping('lr: 0.1'),
                                 "the run config (flat keys) without λ, seed, steps")
    budget: int = param(1500, Int(ge=1), "steps of every full run, T", unit="steps")
    grid: tuple[float, ...] = param((1e-3, 4e-3, 1.6e-2, 6.4e-2), Floats(Real(gt=0)),
                                    "λ grid (λ = 0 is added)")
    seeds: tuple[int, ...] = param((0, 1), Ints(Int(ge=0)), "seeds of every method")
    evals: int = param(15, Int(ge=1), "evaluations spread evenly over each run")
    optuna: bool = param(False, Bool(), "also run Optuna TPE (needs optuna)")
    selector: bool = param(False, Bool(), "also run the λ selector (choose_lambda) per seed")
    pruners: str = param("none", Choice(PRUNER_CHOICES),
                         "with the selector: Optuna TPE with these pruners at its compute "
                         "(needs optuna)")
    autol2_variants: dict[str, Any] = param(
        {"AutoL2 (paper rule)": {}}, PlainMapping("'paper rule': {}"),
        "AutoL2 variants: name → config overrides")
    name: str = param("mini", TEXT, "the task's name (in logs and caches)")
    description: str = param(
        "MNIST-1D (500 train), 2×64 MLP, SGD η = 0.2, T = 1 500", TEXT,
        "what was run, for the report")


@dataclass
class TuningResult:
    res: dict[str, Any]  # run_tuning_task's result
    variants: list[str]
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class TuningStudy(Study):
    key = "tuning"
    title = "λ from one short run, and AutoL2"
    paper = LG
    Params = TuningParams

    def run(self, params: TuningParams, ctx: Context) -> TuningResult:
        from l2dynamics.studies.tuning import TuningTask, run_tuning_task

        pruners = [] if params.pruners == "none" else params.pruners.split("+")
        if params.optuna or (params.selector and pruners):
            try:
                import optuna as _  # noqa: F401
            except ImportError:
                from l2dynamics.errors import ConfigError

                raise ConfigError("optuna=true and pruners need the optuna package (pip "
                                  "install optuna)") from None
        task = TuningTask(params.name, dict(params.base), params.budget, grid=params.grid,
                          seeds=params.seeds, evals=params.evals,
                          description=params.description)
        res = run_tuning_task(task, ctx.store, workers=ctx.workers, use_optuna=params.optuna,
                              use_selector=params.selector, pruners=pruners,
                              autol2_variants=dict(params.autol2_variants),
                              cache_dir=ctx.store.parent / "tuning_cache", log=ctx.log)
        return TuningResult(res, list(params.autol2_variants), params.description,
                            {"task": dict(params.base), "budget": params.budget,
                             "grid": list(params.grid), "seeds": list(params.seeds)})

    def claims(self, result: TuningResult) -> list[Claim]:
        return tuning_claims(result.res, result.variants)

    def figures(self, result: TuningResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_tuning

        curves = [m["name"] for m in result.res["methods"] if m.get("curves")]
        return [Figure(plot_tuning(result.res, ctx.figure("tuning.png")),
                       "final accuracy against λ (grid) with each method's λ"
                       + ("; AutoL2's curves against the best constant λ's" if curves else ""),
                       series=("grid", "λ = 0", *curves,
                               *(["constant λ"] if curves else [])))]

    def tables(self, result: TuningResult) -> list[dict[str, Any]]:
        import pandas as pd

        rows = pd.DataFrame([{"method": m["name"],
                              "λ": ", ".join(f"{x:.3g}" for x in m["lams"]),
                              "final test acc (seed mean)": m["mean"],
                              "SE of the mean": m["se"], "seeds": len(m.get("finals") or [])}
                             for m in result.res["methods"]])
        return [table("methods", rows)]

    def data(self, result: TuningResult) -> dict[str, Any]:
        return {"tuning": result.res}


MARGIN = 0.005  # "matches the grid's best": at most 0.5 points of final accuracy worse


def _gap(grid: dict[str, Any], method: dict[str, Any]) -> Any:
    """Interval of the accuracy the method loses against the grid's best: paired by seed (the
    same seeds run both) when the finals line up, else Welch."""
    a, b = list(grid.get("finals") or []), list(method.get("finals") or [])
    if a and len(a) == len(b):
        return seed_interval([x - y for x, y in zip(a, b, strict=True)])
    return welch_interval(a, b)


def points_text(gap: float) -> str:
    """A gap in accuracy (grid − method, a fraction) in words: "4.43 points below",
    "0.30 points above", never a signed number whose sign the reader must decode."""
    if not math.isfinite(gap):
        return "an unknown distance from"
    if abs(gap) < 5e-5:
        return "level with"
    return f"{100 * abs(gap):.2f} points {'below' if gap > 0 else 'above'}"


def _non_inferiority(claim: str, gap: Any, grid_mean: float, mean: float, note: str = "",
                     margin: float = MARGIN) -> Claim:
    """Holds iff the whole interval of the gap lies below the margin; does not hold iff it
    lies above it; undetermined (too imprecise) otherwise."""
    measured = (f"{mean:.4f} vs grid best {grid_mean:.4f} ({points_text(gap.mean)} the "
                f"grid's best)" + note)
    ci = (f"{gap.text(3)} (of the points lost, ×100: [{100 * gap.low:.2f}, "
          f"{100 * gap.high:.2f}]); margin {100 * margin:.2f} points")
    if not (math.isfinite(gap.low) and math.isfinite(gap.high)):
        return Claim(claim, measured, "undetermined", ci)
    verdict = ("holds" if gap.high < margin else "does not hold" if gap.low > margin
               else "undetermined")
    return Claim(claim, measured, verdict, ci)


def tuning_claims(res: dict[str, Any], variants: list[str]) -> list[Claim]:
    """How much L2 matters at the budget (:func:`~l2dynamics.analysis.l2_effect.l2_effect_claim`
    on the grid), then the prediction and AutoL2 claims of a :func:`run_tuning_task` result:
    non-inferiority to the grid's best constant λ with a margin of 0.5 points. The grid's best
    λ is chosen on the same seeds, which favours the grid a little."""
    from l2dynamics.analysis.l2_effect import l2_effect_claim

    methods = {m["name"]: m for m in res["methods"]}
    grid = methods["grid best"]
    # how much L2 matters at this budget comes first: the grid's best λ against λ = 0
    claims = [l2_effect_claim({row["lam"]: row["finals"] for row in grid.get("table") or []},
                              label=f"(T = {res.get('budget', '?')} steps) ")]
    pred = res["prediction"]
    pred_methods = [m for m in res["methods"] if m["name"] in res["predictions"]]
    what = f"(loses at most {100 * MARGIN:.1f} points against the grid's best λ)"
    if pred["ok"] and pred_methods:
        m = pred_methods[0]
        note = (f"; λ_pred {pred['lam']:.3g} vs grid best {res['best_lam']:.3g}, at "
                f"{pred['compute_fraction']:.2f} runs' compute")
        claims.append(_non_inferiority(f"λ predicted from one short run matches the grid's "
                                       f"best {what}", _gap(grid, m), grid["mean"], m["mean"],
                                       note))
    else:
        claims.append(Claim("λ predicted from one short run matches the grid's best",
                            f"no prediction: {pred.get('message', '')}", "undetermined"))
    selector = methods.get("selector (choose_lambda)")
    if selector is not None:  # issue 19's goal: within max(0.2 points, the grid's seed SE)
        margin = max(0.002, grid["se"] if math.isfinite(grid["se"]) else 0.0)
        steps = sum(selector["steps_per_seed"]) / len(selector["steps_per_seed"])
        note = (f"; {steps / grid['steps_per_seed']:.2f} of the grid's steps per seed, routes "
                f"{', '.join(sorted(set(selector['routes'])))}")
        claims.append(_non_inferiority(
            f"the λ selector matches the grid's best (loses at most max(0.2 points, the grid's "
            f"seed SE) = {100 * margin:.2f} points)", _gap(grid, selector), grid["mean"],
            selector["mean"], note, margin=margin))
    for name in variants:
        auto = methods.get(name)
        if auto is None:
            continue
        label = name if name.lower().startswith("autol2") else f"AutoL2 ({name})"
        claims.append(_non_inferiority(f"{label} reaches the best constant λ's accuracy {what}",
                                       _gap(grid, auto), grid["mean"], auto["mean"]))
    for name, ema in methods.items():  # the zero-cost baseline every method must beat
        if name.startswith("EMA rule"):
            note = f"; λ_EMA {res.get('lam_ema', math.nan):.3g}"
            claims.append(_non_inferiority(f"{name} (Wang & Aitchison's baseline) matches the "
                                           f"grid's best {what}", _gap(grid, ema), grid["mean"],
                                           ema["mean"], note))
    return claims
