"""Study ``norm_traces`` (van Laarhoven 2017): ‖w‖, the effective learning rate η/‖w‖² and the
angular update of each scale-invariant tensor against step, for several λ, with the predictions
(the equilibrium norm from each window's measured gradient, and for λ = 0 the growth law
‖w_t‖⁴ = ‖w_0‖⁴ + 2η²Σ‖ḡ‖²; :func:`l2dynamics.studies.norms.norm_traces`).

Claims, for the first scale-invariant tensor: λ = 0, the final ‖w‖ follows the growth law
within 5 % (a cumulative identity, exact up to BN's ε); λ > 0, over the last two relaxation
times the mean ‖w‖ follows the drift-corrected one-step identity
E‖w‖² = (η²E‖∇L‖² − D)/(ηλ(2 − ηλ)) within ±2 % (a batch-means interval of 5 pieces inside the
tolerance), its drift reported: a norm still on its way to equilibrium obeys the identity but
is not yet at the equilibrium norm, and the claim says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.analysis.verdicts import Claim, equivalence_rule, ratio_claim
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
                               "step, with the predictions", series=("λ = ",)))
        return figs

    def data(self, result: TracesResult) -> dict[str, Any]:
        return {"traces": result.traces}


#: the span of the identity claim, in relaxation times, and its tolerance on ‖w‖
SPAN_RELAXATION_TIMES, IDENTITY_TOLERANCE, BATCHES = 2.0, 0.02, 5


def _span(run: dict[str, Any]) -> pd.DataFrame:
    """The run's last windows covering ≥ SPAN_RELAXATION_TIMES relaxation times, as a window
    table for :func:`~l2dynamics.studies.norms.pooled_span` (tensor name "w")."""
    frame = pd.DataFrame({"step": run["step"], "probe_updates": run["updates"],
                          "norm_ms/w": run["norm_ms"],
                          "grad_ms/w": run["grad_ms"], "norm_drift/w": run["norm_drift"],
                          "angle_rms/w": run["angle_rms"]}).dropna()
    need = SPAN_RELAXATION_TIMES * run["relaxation_steps"]
    covered = frame["probe_updates"][::-1].cumsum()[::-1]
    return frame[covered.shift(-1, fill_value=0.0) < need]


def identity_claim(run: dict[str, Any], lr: float) -> Claim:
    """λ > 0: the drift-corrected one-step identity of SGD over the last 2 relaxation times."""
    from l2dynamics.analysis import equilibrium_measured as eqm
    from l2dynamics.analysis.intervals import seed_interval
    from l2dynamics.studies.norms import pooled_span

    lam = run["lam"]
    frame = _span(run)
    label = (f"λ = {lam:g}: ‖w‖ follows the drift-corrected identity "
             f"E‖w‖² = (η²E‖∇L‖² − D)/(ηλ(2 − ηλ)) over the last "
             f"{SPAN_RELAXATION_TIMES:g} relaxation times (within ±{100 * IDENTITY_TOLERANCE:g} %)")

    def ratio(rows: pd.DataFrame) -> tuple[float, float]:
        span = pooled_span(rows, "w")
        pred = eqm.sgdm_norm_sq_measured(lr, lam, span["grad_ms"], drift=span["norm_drift"])
        return math.sqrt(span["norm_ms"] / pred), span["norm_ms"]

    if len(frame) < BATCHES:
        return Claim(label, f"only {len(frame)} probe windows in the span", "undetermined")
    value, _ = ratio(frame)
    pieces, means, centers = [], [], []
    for i in np.array_split(np.arange(len(frame)), BATCHES):
        rows = frame.iloc[i]
        r, mean = ratio(rows)
        pieces.append(r)
        means.append(mean)
        n = rows["probe_updates"].to_numpy(float)
        centers.append(float(((rows["step"].to_numpy(float) - n / 2) * n).sum() / n.sum()))
    trend = eqm.drift_per_relaxation(means, centers, run["relaxation_steps"])
    iv = seed_interval(pieces)
    verdict = equivalence_rule(iv.low - 1.0, iv.high - 1.0, IDENTITY_TOLERANCE)
    state = ("at equilibrium" if abs(trend) <= eqm.STATIONARY_DRIFT
             else "not yet at equilibrium")
    steps = int(sum(frame["probe_updates"]))
    measured = (f"measured/predicted {value:.3f} over the last {steps} steps; ‖w‖² trend "
                f"{100 * trend:+.1f} % per relaxation time ({state}); the final window against "
                f"the equilibrium norm without drift: {run['norm'][-1] / run['pred_norm'][-1]:.3f}")
    return Claim(label, measured, verdict,
                 f"95 % batch-means t-interval (n = {iv.n} consecutive pieces): "
                 f"[{iv.low:.3f}, {iv.high:.3f}]; tolerance ±{100 * IDENTITY_TOLERANCE:g} %")


def traces_claims(traces: dict[str, Any]) -> list[Claim]:
    """Per λ, for the first tensor: the growth law (λ = 0) or the drift-corrected identity."""
    tensor = sorted({r["tensor"] for r in traces["runs"]})[0]
    claims = []
    for run in traces["runs"]:
        if run["tensor"] != tensor:
            continue
        if run["lam"] > 0:
            claims.append(identity_claim(run, traces["lr"]))
            continue
        claim = ratio_claim("λ = 0: final ‖w‖ follows the growth law ‖w‖⁴ = ‖w₀‖⁴ + 2η²Σ‖ḡ‖² "
                            "(within 5 %)", [run["norm"][-1] / run["pred_norm"][-1]], 0.05)
        claim.measured += f" at step {run['step'][-1]:.0f}"
        claims.append(claim)
    return claims
