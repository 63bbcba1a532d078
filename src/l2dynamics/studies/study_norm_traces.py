"""Study ``norm_traces`` (van Laarhoven 2017): ‖w‖, the effective learning rate η/‖w‖² and the
angular update of each scale-invariant tensor against step, for several λ, with the predictions
(the equilibrium norm from each window's measured gradient, and for λ = 0 the growth law
‖w_t‖⁴ = ‖w_0‖⁴ + 2η²Σ‖ḡ‖²; :func:`l2dynamics.studies.norms.norm_traces`).

Claim: the final ‖w‖ of the first scale-invariant tensor is within 5 % of its prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.verdicts import Claim, ratio_claim
from l2dynamics.config.constraints import Bool, Floats, Int, PlainMapping, Real
from l2dynamics.studies.base import TEXT, VL, Context, Figure, Study, param
from l2dynamics.studies.study_norm_equilibrium import NORM_MINI


@dataclass
class TracesParams:
    lams: tuple[float, ...] = param((0.0, 5e-3, 2e-2), Floats(Real(ge=0)), "λ of the runs")
    base: dict[str, Any] = param(NORM_MINI, PlainMapping('lr: 0.1'),
                                 "overrides of the BN network's config")
    lr: float = param(0.1, Real(gt=0), "SGD learning rate η")
    steps: int = param(3000, Int(ge=1), "steps per run", unit="steps")
    seed: int = param(0, Int(ge=0), "seed of every run")
    all_tensors: bool = param(False, Bool(),
                              "draw every scale-invariant tensor (default: the first)")
    description: str = param(
        "SGD η = 0.1 on the BN MLP for λ ∈ {0, 5e-3, 2e-2}, 3 000 steps", TEXT,
        "what was run, for the report")


@dataclass
class TracesResult:
    traces: dict[str, Any]  # norm_traces' result: {"runs": [{lam, tensor, step, norm, …}]}
    all_tensors: bool
    description: str
    design: dict[str, Any] = field(default_factory=dict)

    @property
    def tensors(self) -> list[str]:
        names = sorted({r["tensor"] for r in self.traces["runs"]})
        return names if self.all_tensors else names[:1]


class NormTracesStudy(Study):
    key = "norm_traces"
    title = "Norm and effective-LR traces"
    paper = VL
    Params = TracesParams

    def run(self, params: TracesParams, ctx: Context) -> TracesResult:
        from l2dynamics.studies.norms import norm_traces

        traces = norm_traces(params.lams, base=params.base, lr=params.lr, steps=params.steps,
                             seed=params.seed, store=ctx.store, progress=ctx.log)
        return TracesResult(traces, params.all_tensors, params.description,
                            {"lams": list(params.lams), "steps": params.steps, "lr": params.lr})

    def claims(self, result: TracesResult) -> list[Claim]:
        return traces_claims(result.traces)

    def figures(self, result: TracesResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_norm_traces

        figs = []
        for tensor in result.tensors:
            name = "traces.png" if not result.all_tensors else \
                f"traces_{tensor.replace('.', '_')}.png"
            figs.append(Figure(plot_norm_traces(result.traces, ctx.figure(name), tensor=tensor),
                               f"‖w‖, effective LR and angular update of {tensor} against "
                               "step, with the predictions"))
        return figs

    def data(self, result: TracesResult) -> dict[str, Any]:
        return {"traces": result.traces}


def traces_claims(traces: dict[str, Any]) -> list[Claim]:
    """Per λ: the first tensor's final ‖w‖ within 5 % of its prediction."""
    tensor = sorted({r["tensor"] for r in traces["runs"]})[0]
    claims = []
    for run in traces["runs"]:
        if run["tensor"] != tensor:
            continue
        law = "growth law ‖w‖⁴ = ‖w₀‖⁴ + 2η²Σ‖ḡ‖²" if run["lam"] == 0 else "equilibrium norm"
        claim = ratio_claim(f"λ = {run['lam']:g}: final ‖w‖ follows the {law} (within 5 %)",
                            [run["norm"][-1] / run["pred_norm"][-1]], 0.05)
        claim.measured += f" at step {run['step'][-1]:.0f}"
        claims.append(claim)
    return claims
