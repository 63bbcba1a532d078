"""Study ``norm_bridge`` (van Laarhoven 2017 meets Lewkowycz & Gur-Ari 2020): the same CNN
without and with BN under one λ grid; does t* ∝ 1/λ survive when λ acts through the effective
learning rate (:func:`l2dynamics.studies.norms.bn_bridge`)?

Claim per norm: the slope of log t* against log λ is −1 (its 95 % t-interval holds −1 and
excludes 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.verdicts import Claim, slope_claim
from l2dynamics.config.constraints import Floats, Int, Ints, PlainMapping, Real
from l2dynamics.studies.base import TEXT, VL, Context, Figure, Study, param


@dataclass
class BridgeParams:
    lams: tuple[float, ...] = param((5e-3, 1e-2, 2e-2, 4e-2), Floats(Real(gt=0)), "λ grid")
    steps: int = param(2500, Int(ge=1), "steps per run", unit="steps")
    seeds: tuple[int, ...] = param((0,), Ints(Int(ge=0)), "seeds of every λ")
    base: dict[str, Any] = param({}, PlainMapping('lr: 0.1'), "overrides of the CNN's config")
    description: str = param(
        "digits (8×8, 600 train), 2-layer CNN of 16 channels without and with BN, SGD η = 0.1, "
        "λ ∈ {5e-3 … 4e-2}, 2 500 steps", TEXT, "what was run, for the report")


@dataclass
class BridgeResult:
    res: dict[str, Any]  # bn_bridge's result: {"norms": {norm: {"fit", "verdict", …}}, …}
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class NormBridgeStudy(Study):
    key = "norm_bridge"
    title = "Bridge: t* with and without BN"
    paper = VL
    Params = BridgeParams

    def run(self, params: BridgeParams, ctx: Context) -> BridgeResult:
        from l2dynamics.studies.norms import bn_bridge

        res = bn_bridge(params.lams, store=ctx.store, base=params.base or None,
                        steps=params.steps, seeds=params.seeds, workers=ctx.workers,
                        progress=ctx.log)
        return BridgeResult(res, params.description, {"lams": res["lams"],
                                                      "steps": res["steps"]})

    def claims(self, result: BridgeResult) -> list[Claim]:
        return bridge_claims(result.res)

    def figures(self, result: BridgeResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_bn_bridge

        return [Figure(plot_bn_bridge(result.res, ctx.figure("bridge.png")),
                       "t* and peak accuracy against λ, with and without BN",
                       series=("BN", "no norm"))]

    def data(self, result: BridgeResult) -> dict[str, Any]:
        return {"bridge": result.res}


def bridge_claims(res: dict[str, Any]) -> list[Claim]:
    """Per norm, the t* slope claim of :func:`analysis.tstar.tstar_fits` (margin, budget check
    and its note) on that norm's runs."""
    claims = []
    for norm, part in res["norms"].items():
        fit = dict(part["fit"])
        label = f"CNN {'without' if norm == 'none' else 'with'} BN: t* ∝ 1/λ"
        claim = slope_claim(label, {**fit, "points": fit.get("used", 0)}, -1.0)
        if fit.get("verdict") and fit["verdict"] != claim.verdict:  # e.g. t* moved with budget
            claim.verdict = fit["verdict"]
        if fit.get("note"):
            claim.measured += f" — {fit['note']}"
        claims.append(claim)
    return claims
