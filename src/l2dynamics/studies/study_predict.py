"""Study ``predict`` (Lewkowycz & Gur-Ari 2020, §3): the best λ for a T-step run from short
probe runs at a large λ (:func:`l2dynamics.studies.predict.predict_lambda`), beside the
zero-cost EMA-timescale rule (:func:`~l2dynamics.studies.predict.ema_timescale_lambda`).

A tool more than a test of a claim: it judges nothing (the ``tuning`` study compares the
prediction with a grid search), and reports λ_pred, its interval, the probes and their cost.

With a learning-rate schedule the probes run at its *initial* η (warm-up kept, then constant
``lr``: a step or cosine decay squeezed into a short probe would change η during it), and the
full run's effective time Φ_full(T) lays the schedule out over the budget T, whatever ``steps``
the base config holds. The interval of λ_pred is the seeds' small-sample interval of t*_ref
(t-interval for ≥ 3 usable seeds, seed range for 2), named in the description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from l2dynamics.analysis.peak import ESTIMATORS
from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import Bool, Choice, Int, Ints, Optional, PlainMapping, Real
from l2dynamics.studies.base import LG, Context, Figure, Study, param, table

DEFAULT_BASE = {"dataset": "mnist1d", "n_train": 500, "n_test": 2000, "model": "fc",
                "width": 64, "depth": 2, "lr": 0.2, "batch_size": 128,
                "norms_per_tensor": False}


@dataclass
class PredictParams:
    base: dict[str, Any] = param(DEFAULT_BASE, PlainMapping('lr: 0.1'),
                                 "the full run's config (flat keys)")
    budget: int = param(1500, Int(ge=1), "steps of the full run, T", unit="steps")
    seeds: tuple[int, ...] = param((0, 1, 2), Ints(Int(ge=0)), "probe seeds")
    lam_ref: float | None = param(None, Optional(Real(gt=0)),
                                  "probe λ (default: the λ whose probe is 1/20 of the budget)")
    probe_k: float = param(4.0, Real(gt=0), "probe length in λ·η·steps")
    estimator: str = param("onset", Choice(ESTIMATORS), "t* estimator")
    early_stop: bool = param(True, Bool(), "end a probe early once it has settled below the "
                             "training accuracy it must reach")
    max_probe_steps: int | None = param(None, Int(ge=1, optional=True),
                                        "longest step-down probe per seed (default: "
                                        "the budget)", unit="steps")
    ema_fraction: float = param(0.25, Real(gt=0, le=1),
                                "the EMA-timescale rule's τ as a fraction of the run")


@dataclass
class PredictResult:
    prediction: Any  # LambdaPrediction
    ema_lambda: float
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class PredictStudy(Study):
    key = "predict"
    title = "λ for a budget from one short run"
    paper = LG
    Params = PredictParams

    def run(self, params: PredictParams, ctx: Context) -> PredictResult:
        from l2dynamics.config import make_config
        from l2dynamics.studies.predict import ema_timescale_lambda, predict_lambda

        cfg = make_config(dict(params.base))
        pred = predict_lambda(cfg, params.budget, lam_ref=params.lam_ref,
                              probe_k=params.probe_k, estimator=params.estimator,
                              early_stop=params.early_stop,
                              max_probe_steps=params.max_probe_steps, seeds=params.seeds,
                              progress=ctx.log)
        ema = ema_timescale_lambda(cfg, params.budget, fraction=params.ema_fraction)
        cost = f"probe compute {pred.probe_steps} steps = {pred.compute_fraction:.2f} of one run"
        found = (f"λ_pred = {pred.lam:.3g} {_interval_text(pred)} for T = {params.budget} "
                 f"(c·η = λ_ref·Φ(t*) = {pred.c_eta:.3g}, t*_ref = {pred.tstar_ref:.0f} steps "
                 f"at λ_ref = {pred.lam_ref:.3g})" if pred.ok
                 else f"no prediction: {pred.message}")
        schedule = ("" if cfg.lr_schedule == "constant" else
                    f", its {cfg.lr_schedule} schedule laid out over T")
        what = (f"{cfg.model} on {cfg.dataset}, {cfg.optimizer} η = {cfg.lr:g}{schedule}, T = "
                f"{params.budget} steps; probes of {params.probe_k:g}/(ηλ) steps at "
                f"{pred.probe_schedule}, {len(params.seeds)} seeds, t* = {params.estimator}. "
                f"{found}; {cost}. The zero-cost EMA-timescale rule gives λ = {ema:.3g}.")
        return PredictResult(pred, ema, what, {"base": cfg.to_dict(), "budget": params.budget})

    def claims(self, result: PredictResult) -> list[Claim]:
        return []

    def figures(self, result: PredictResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_prediction

        return [Figure(plot_prediction(result.prediction, ctx.figure("prediction.png")),
                       "test accuracy of every probe run against step, with its t*",
                       series=("probe λ=",))]

    def tables(self, result: PredictResult) -> list[dict[str, Any]]:
        import pandas as pd

        p = result.prediction
        probes = pd.DataFrame([{
            "probe λ": a.lam, "seeds": len(a.tstars), "steps": a.steps,
            "ran": "/".join(str(n) for n in a.steps_done),
            "t*": ", ".join(f"{t:.0f}" for t in a.tstars),
            "fit train": f"{sum(a.fits_train)}/{len(a.fits_train)}",
            "censored": sum(a.censored)} for a in p.attempts])
        rows = [{"rule": "one short run", "λ": p.lam if p.ok else None,
                 "interval": _interval_text(p) if p.ok else "",
                 "cost (runs)": p.compute_fraction,
                 "note": f"c·η = {p.c_eta:.3g}, t*_ref = {p.tstar_ref:.0f} at λ_ref = "
                         f"{p.lam_ref:.3g}" if p.ok else p.message},
                {"rule": "EMA timescale (τ = fraction·T)", "λ": result.ema_lambda,
                 "interval": "", "cost (runs)": 0.0, "note": "zero cost, c·η fixed"}]
        return [table("probes", probes), table("λ for the budget", pd.DataFrame(rows))]

    def data(self, result: PredictResult) -> dict[str, Any]:
        summary = asdict(result.prediction)
        for a in summary["attempts"]:
            a.pop("histories")
        return {"prediction": {**summary, "ema_timescale_lambda": result.ema_lambda}}


def _interval_text(pred: Any) -> str:
    """E.g. "[0.004, 0.006] (95 % t-interval, 3 seeds)"; "(single seed, no interval)"."""
    if pred.interval_method == "single seed":
        return "(single seed, no interval)"
    level = "95 % " if pred.interval_method == "t-interval" else ""
    return (f"[{pred.lam_low:.3g}, {pred.lam_high:.3g}] ({level}{pred.interval_method}, "
            f"{pred.seeds} seeds)")
