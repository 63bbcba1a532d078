"""Study ``norm_equilibrium`` (van Laarhoven 2017): for weights followed by a normalization, L2
sets the weight norm; at equilibrium ‖w‖ and the RMS angular update follow closed forms per
optimizer (:mod:`l2dynamics.analysis.equilibrium`).

Runs one BN network per optimizer case through a burn-in (the arrival of ‖w‖ at equilibrium
plus ``relax_times`` relaxation times), measures over ``measure_times`` more
(:func:`l2dynamics.studies.norms.equilibrium_check`) and, for every scale-invariant tensor that
passes the stationarity test (the trend of ‖w‖² is at most 2 % per relaxation time, so the
norm lags its slowly moving equilibrium by at most ≈ 2 %), judges
measured/predicted of ‖w‖ and of the RMS angle against the predictions from the measured
statistics (drift, SGDM's momentum–gradient correlation, Adam's per-element L2 step, update
power and preconditioned cross term). The random-walk closed forms stand beside them in the
table with the statistics that explain their misses.

One tolerance, ±2 %, for ‖w‖ and for the angle: at a fixed gradient the angle scales as
1/‖w‖ (SGD's angle ratio is the inverse of its norm ratio), so one deviation gets one
tolerance. Each ratio carries a batch-means 95 % t-interval (the measured span cut into 5
consecutive pieces); "holds" needs the interval inside the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.verdicts import Claim, equivalence_rule
from l2dynamics.config.constraints import Int, PlainMapping, Real
from l2dynamics.studies.base import TEXT, VL, Context, Study, param, table

NORM_MINI = {"n_train": 2000, "n_test": 2000}  # the mini suite's BN MLP on MNIST-1D
MINI_CASES = {"sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 2e-2},
              "sgdm": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "lam": 5e-3},
              "adam_l2": {"optimizer": "adam", "lr": 3e-3, "lam": 5e-2, "betas": [0.9, 0.99]},
              "adamw": {"optimizer": "adamw", "lr": 1e-3, "decoupled_wd": 2.0,
                        "betas": [0.9, 0.99]}}
TOLERANCE = 0.02  # on ‖w‖ and on the RMS angle alike


@dataclass
class EquilibriumParams:
    cases: dict[str, Any] = param(
        MINI_CASES, PlainMapping('sgd: {optimizer: sgd, lr: 0.1, lam: 0.01}'),
        "optimizer cases: name → config overrides")
    base: dict[str, Any] = param(NORM_MINI, PlainMapping('lr: 0.1'),
                                 "overrides of the BN network's config")
    relax_times: float = param(10.0, Real(gt=0),
                               "relaxation times after the arrival, before measuring")
    measure_times: float = param(5.0, Real(gt=0), "relaxation times measured")
    windows: int = param(25, Int(ge=5), "measurement windows (5 consecutive batches of them "
                         "give the intervals)")
    seed: int = param(0, Int(ge=0), "seed of every run")
    description: str = param(
        "BN MLP (2×128) on MNIST-1D, L2 on the weights only; each case runs until ‖w‖ has "
        "arrived at its equilibrium plus 10 relaxation times, then is measured over 5 more",
        TEXT, "what was run, for the report")


@dataclass
class EquilibriumResult:
    table: Any  # one row per (case, tensor): norm, pred_norm, norm_ratio, angle_rms, …
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class NormEquilibriumStudy(Study):
    key = "norm_equilibrium"
    title = "Equilibrium norms and angular updates"
    paper = VL
    Params = EquilibriumParams

    def run(self, params: EquilibriumParams, ctx: Context) -> EquilibriumResult:
        from l2dynamics.studies.norms import equilibrium_check

        cases = {name: {k: tuple(v) if isinstance(v, list) else v for k, v in case.items()}
                 for name, case in params.cases.items()}
        frame = equilibrium_check(cases, base=params.base, relax_times=params.relax_times,
                                  measure_times=params.measure_times, windows=params.windows,
                                  seed=params.seed, store=ctx.store, progress=ctx.log)
        return EquilibriumResult(frame, params.description, {"cases": params.cases})

    def claims(self, result: EquilibriumResult) -> list[Claim]:
        return equilibrium_claims(result.table)

    def tables(self, result: EquilibriumResult) -> list[dict[str, Any]]:
        t = result.table
        shown = t[["case", "tensor", "steps", "burn_in", "relaxation_steps",
                   "drift_per_tau_pct", "drift_pct", "stationary", "norm", "pred_norm",
                   "norm_ratio", "angle_rms", "pred_angle", "angle_ratio"]]
        why = t[["case", "tensor", "norm_ratio_rw", "angle_ratio_rw", "mom_corr", "u_tilde",
                 "kappa", "cross_share", "d_eff"]]
        return [table("measured / predicted from the measured statistics, after the "
                      "stationarity test", shown),
                table("the random-walk closed forms, and the statistics behind their misses "
                      "(mom_corr = 2μK/G; u_tilde = Adam's update power over white noise; "
                      "kappa = anisotropy of v̂ seen by the L2 step; cross_share = growth "
                      "cancelled by ⟨w, ∇L/√v̂⟩)", why)]

    def data(self, result: EquilibriumResult) -> dict[str, Any]:
        return {"equilibrium": result.table}


def _ratio_verdict(rows: Any, what: str) -> tuple[str, list[str], list[str]]:
    """The combined verdict over the stationary tensors of one case, with each one's text."""
    verdicts, texts, intervals = [], [], []
    for _, r in rows.iterrows():
        low, high = r[f"{what}_ratio_low"], r[f"{what}_ratio_high"]
        verdicts.append(equivalence_rule(low - 1.0, high - 1.0, TOLERANCE))
        texts.append(f"{r['tensor']} {r[f'{what}_ratio']:.3f}")
        intervals.append(f"{r['tensor']} [{low:.3f}, {high:.3f}]")
    verdict = ("does not hold" if "does not hold" in verdicts else "holds"
               if verdicts and all(v == "holds" for v in verdicts) else "undetermined")
    return verdict, texts, intervals


def equilibrium_claims(frame: Any) -> list[Claim]:
    """Per case: every stationary tensor's ‖w‖ and RMS angle within ±2 % of the prediction from
    the measured statistics (batch-means interval inside the tolerance). Tensors that fail the
    stationarity test get no verdict; a case with none is undetermined and says why."""
    from l2dynamics.analysis.equilibrium_measured import STATIONARY_DRIFT

    claims = []
    for case, group in frame.groupby("case", sort=False):
        ok = group[group["stationary"]]
        moving = group[~group["stationary"]]
        status = f"{len(ok)} of {len(group)} tensors stationary"
        if len(moving):
            status += " (" + ", ".join(
                f"{r['tensor']} ‖w‖² trend {r['drift_per_tau_pct']:+.1f} %"
                for _, r in moving.iterrows()) + \
                f" per relaxation time, limit ±{100 * STATIONARY_DRIFT:g} %: no verdict)"
        for what, label in (("norm", "equilibrium ‖w‖"), ("angle", "RMS angular update")):
            rw = ", ".join(f"{x:.3f}" for x in group[f"{what}_ratio_rw"])
            verdict, texts, intervals = _ratio_verdict(ok, what)
            measured = (f"measured/predicted {', '.join(texts) or '—'}; {status}; random-walk "
                        f"closed form {rw}")
            n = int(ok["batches"].min()) if len(ok) and math.isfinite(ok["batches"].min()) \
                else 0
            ci = (f"95 % batch-means t-intervals (n = {n} consecutive pieces of the measured "
                  f"span): {'; '.join(intervals)}; tolerance ±{100 * TOLERANCE:g} %"
                  if len(ok) else None)
            claims.append(Claim(f"{case}: {label} within ±{100 * TOLERANCE:g} % of the "
                                "prediction from the measured statistics", measured, verdict,
                                ci))
    return claims
