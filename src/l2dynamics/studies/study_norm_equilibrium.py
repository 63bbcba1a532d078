"""Study ``norm_equilibrium`` (van Laarhoven 2017): for weights followed by a normalization, L2
sets the weight norm; at equilibrium ‖w‖ and the RMS angular update follow closed forms per
optimizer (:mod:`l2dynamics.analysis.equilibrium`).

Runs one BN network per optimizer case for ``relax_times`` relaxation times, measures over
``measure_times`` more (:func:`l2dynamics.studies.norms.equilibrium_check`) and judges
measured/predicted of every scale-invariant tensor: the norm within 5 %, the angle within 2 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.verdicts import Claim, ratio_claim
from l2dynamics.config.constraints import Int, PlainMapping, Real
from l2dynamics.studies.base import TEXT, VL, Context, Study, param, table

NORM_MINI = {"n_train": 2000, "n_test": 2000}  # the mini suite's BN MLP on MNIST-1D
MINI_CASES = {"sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 2e-2},
              "sgdm": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "lam": 2e-1},
              "adam_l2": {"optimizer": "adam", "lr": 3e-3, "lam": 5e-2, "betas": [0.9, 0.99]},
              "adamw": {"optimizer": "adamw", "lr": 1e-3, "decoupled_wd": 2.0,
                        "betas": [0.9, 0.99]}}
NORM_TOLERANCE, ANGLE_TOLERANCE = 0.05, 0.02


@dataclass
class EquilibriumParams:
    cases: dict[str, Any] = param(
        MINI_CASES, PlainMapping('sgd: {optimizer: sgd, lr: 0.1, lam: 0.01}'),
        "optimizer cases: name → config overrides")
    base: dict[str, Any] = param(NORM_MINI, PlainMapping('lr: 0.1'),
                                 "overrides of the BN network's config")
    relax_times: float = param(10.0, Real(gt=0), "relaxation times before measuring")
    measure_times: float = param(3.0, Real(gt=0), "relaxation times measured")
    windows: int = param(20, Int(ge=1), "measurement windows")
    seed: int = param(0, Int(ge=0), "seed of every run")
    description: str = param(
        "BN MLP (2×128) on MNIST-1D, L2 on the weights only; each case runs 10 relaxation "
        "times, then is measured over 3 more", TEXT, "what was run, for the report")


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
        shown = result.table[["case", "tensor", "steps", "relaxation_steps", "norm",
                              "pred_norm", "norm_ratio", "angle_rms", "pred_angle",
                              "angle_ratio"]]
        return [table("measured / predicted at equilibrium", shown)]

    def data(self, result: EquilibriumResult) -> dict[str, Any]:
        return {"equilibrium": result.table}


def equilibrium_claims(frame: Any) -> list[Claim]:
    """Per case: every tensor's norm within 5 % and RMS angle within 2 % of the prediction."""
    claims = []
    for case, group in frame.groupby("case", sort=False):
        claims.append(ratio_claim(f"{case}: equilibrium ‖w‖ within 5 % of the prediction",
                                  [float(x) for x in group["norm_ratio"]], NORM_TOLERANCE))
        claims.append(ratio_claim(f"{case}: RMS angular update within 2 % of the prediction",
                                  [float(x) for x in group["angle_ratio"]], ANGLE_TOLERANCE))
    return claims
