"""Study ``norm_grid`` (van Laarhoven 2017): over an η×λ grid, the equilibrium effective
learning rate of scale-invariant weights follows √(ηλ) (SGD) or (η²λ)^⅓ (Adam + L2), and the
test error is a function of it (the collapse; :func:`l2dynamics.studies.norms.eta_lam_grid`,
:func:`~l2dynamics.studies.norms.collapse_summary`).

Claims per optimizer: both fitted exponents' CIs hold the prediction (runs ≥ 10 relaxation times
long, at a fixed gradient scale), and the predicted combination explains the test error
(R² ≥ 0.5 and above η's and λ's alone). With ``config`` the grid is a paper config's (Adam).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.verdicts import Claim, slope_margin, slope_rule
from l2dynamics.config.constraints import Int, Ints, PlainMapping
from l2dynamics.studies.base import TEXT, VL, Context, Figure, Study, param, table
from l2dynamics.studies.study_norm_equilibrium import NORM_MINI

MINI_GRIDS = {"sgd": {"lrs": [0.1, 0.3, 1.0], "lams": [3e-3, 1e-2, 3e-2], "steps": 2000},
              "adam": {"lrs": [3e-3, 1e-2, 3e-2], "lams": [1e-2, 3e-2, 1e-1], "steps": 2000}}
LAWS = {"sgd": "√(ηλ)", "adam": "(η²λ)^⅓"}


@dataclass
class GridParams:
    grids: dict[str, Any] = param(
        MINI_GRIDS, PlainMapping('sgd: {lrs: [0.1], lams: [0.01], steps: 1000}'),
        "optimizer (sgd | adam) → {lrs, lams, steps}")
    base: dict[str, Any] = param(NORM_MINI, PlainMapping('lr: 0.1'),
                                 "overrides of the BN network's config")
    seeds: tuple[int, ...] = param((0,), Ints(Int(ge=0)), "seeds of every (η, λ)")
    config: str = param("", TEXT,
                        "a packaged paper config to run instead (its Adam grid; needs --data-dir)")
    description: str = param(
        "BN MLP on MNIST-1D, 3×3 (η, λ) grids for SGD + L2 and Adam + L2 (β₂ = 0.99), 2 000 "
        "steps; exponents fitted over runs ≥ 10 relaxation times long", TEXT,
        "what was run, for the report")

    def check(self) -> None:
        from l2dynamics.errors import ConfigError

        for opt, grid in self.grids.items():
            if opt not in LAWS:
                raise ConfigError(f"grids: optimizer {opt!r} is not one of {', '.join(LAWS)}")
            missing = {"lrs", "lams", "steps"} - set(grid)
            if missing:
                raise ConfigError(f"grids.{opt} lacks {', '.join(sorted(missing))}")


@dataclass
class GridResult:
    grids: dict[str, Any]  # optimizer → {"table": DataFrame, "summary": collapse_summary}
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class NormGridStudy(Study):
    key = "norm_grid"
    title = "The η×λ grid and the effective-LR collapse"
    paper = VL
    Params = GridParams

    def run(self, params: GridParams, ctx: Context) -> GridResult:
        from l2dynamics.studies.norm_grids import GRIDS, collapse_summary, eta_lam_grid
        from l2dynamics.studies.suite import full_base, paper_spec, paper_what

        what, design = params.description, {"grids": params.grids}
        if params.config:
            spec = paper_spec(ctx, params.config)
            base = full_base(spec)
            grids = {base["optimizer"]: {"lrs": spec["grid"]["lr"], "lams": spec["grid"]["lam"],
                                         "steps": spec["base"]["steps"], "base": base,
                                         "seeds": tuple(spec["grid"].get("seed", (0,)))}}
            what, design = paper_what(ctx, params.description, params.config, spec), \
                {"sweep": spec}
        else:
            grids = {opt: {**g, "base": {**params.base, **GRIDS[opt]["base"]},
                           "seeds": params.seeds} for opt, g in params.grids.items()}
        out = {}
        for opt, g in grids.items():
            frame = eta_lam_grid(opt, tuple(g["lrs"]), tuple(g["lams"]), store=ctx.store,
                                 steps=int(g["steps"]), base=g["base"], seeds=tuple(g["seeds"]),
                                 workers=ctx.workers, progress=ctx.log)
            out[opt] = {"table": frame, "summary": collapse_summary(frame)}
        return GridResult(out, what, design)

    def claims(self, result: GridResult) -> list[Claim]:
        claims = []
        for opt, g in result.grids.items():
            claims += grid_claims(opt, g["summary"])
        return claims

    def figures(self, result: GridResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_eta_lam_grid

        return [Figure(plot_eta_lam_grid(g["table"], g["summary"], ctx.figure(f"{opt}.png")),
                       f"{opt}: test error over the η×λ grid with iso-effective-LR lines, the "
                       "collapse against the predicted combination, and the effective LR",
                       series=("in the fit",))
                for opt, g in result.grids.items()]

    def tables(self, result: GridResult) -> list[dict[str, Any]]:
        return [table(f"{opt} grid", g["table"].drop(columns=["run_id", "optimizer"]))
                for opt, g in result.grids.items()]

    def data(self, result: GridResult) -> dict[str, Any]:
        out: dict[str, Any] = {f"grid_{opt}": g["table"] for opt, g in result.grids.items()}
        out["grid"] = {opt: g["summary"] for opt, g in result.grids.items()}
        return out


def grid_claims(opt: str, summary: dict[str, Any]) -> list[Claim]:
    """The exponent and collapse claims of one optimizer's :func:`collapse_summary`."""
    from l2dynamics.studies.norm_grids import EFFECTIVE_LR_EXPONENTS

    law = LAWS[opt]
    fit = summary.get("fit_gbar_normalized")
    claims = []
    if fit:
        p0, q0 = EFFECTIVE_LR_EXPONENTS[opt]
        rules = [slope_rule(*fit["ci_p"], p0, slope_margin(p0)),
                 slope_rule(*fit["ci_q"], q0, slope_margin(q0))]
        verdict = ("does not hold" if "does not hold" in rules else "holds"
                   if rules == ["holds", "holds"] else "undetermined"
                   if "undetermined" in rules else "consistent")
        (pl, ph), (ql, qh) = slope_margin(p0), slope_margin(q0)
        misses = []
        for name, lo_hi, target in (("p", fit["ci_p"], p0), ("q", fit["ci_q"], q0)):
            if not lo_hi[0] <= target <= lo_hi[1]:
                gap = lo_hi[0] - target if lo_hi[0] > target else lo_hi[1] - target
                misses.append(f"{name}'s interval misses {target:.3f} by {abs(gap):.3f}")
        normalizer = summary.get("normalizer", "‖ḡ‖ per tensor")
        excluded = summary.get("outside_small_angle", 0)
        claims.append(Claim(
            f"{opt}: equilibrium effective LR × g^a ∝ {law}, g = {normalizer} (both exponents' "
            "intervals inside a margin of ×1.25 around the prediction)",
            f"η^{fit['p']:.3f} λ^{fit['q']:.3f} over {fit['n']} runs (relaxed"
            + (f"; {excluded} more outside the small-angle regime, excluded" if excluded
               else "") + ")"
            + (f"; supports {fit['supports']}" if "supports" in fit else "")
            + (f"; {'; '.join(misses)}" if misses else "; both intervals contain the "
               "prediction"), verdict,
            f"95 % t-intervals of the exponents, n = {fit['n']} runs: p [{fit['ci_p'][0]:.3f}, "
            f"{fit['ci_p'][1]:.3f}] (margin [{pl:.3f}, {ph:.3f}]), q [{fit['ci_q'][0]:.3f}, "
            f"{fit['ci_q'][1]:.3f}] (margin [{ql:.3f}, {qh:.3f}])"))
        measured = summary.get("fit_measured")
        if measured:
            rules = [slope_rule(*measured["ci_p"], p0, slope_margin(p0)),
                     slope_rule(*measured["ci_q"], q0, slope_margin(q0))]
            verdict = ("does not hold" if "does not hold" in rules else "holds"
                       if rules == ["holds", "holds"] else "undetermined"
                       if "undetermined" in rules else "consistent")
            claims.append(Claim(
                f"{opt}: equilibrium effective LR × (g·ũ)^⅓ ∝ {law}, with the measured update "
                "power ũ (the effective dimension d·ũ) as well (both intervals inside the "
                "same margin)",
                f"η^{measured['p']:.3f} λ^{measured['q']:.3f} over {measured['n']} runs; "
                f"p − ⅔ = {measured['p'] - p0:+.3f}, q − ⅓ = {measured['q'] - q0:+.3f}",
                verdict,
                f"95 % t-intervals of the exponents, n = {measured['n']} runs: p "
                f"[{measured['ci_p'][0]:.3f}, {measured['ci_p'][1]:.3f}], q "
                f"[{measured['ci_q'][0]:.3f}, {measured['ci_q'][1]:.3f}]"))
    else:
        claims.append(Claim(f"{opt}: equilibrium effective LR ∝ {law}",
                            str(summary.get("fit_gbar_normalized_error", "no fit")),
                            "undetermined"))
    r2 = summary["collapse_r2"]
    claims.append(Claim(
        f"{opt}: test error is a function of the effective LR (R² of the predicted combination "
        "≥ 0.5 and above η's and λ's alone)",
        f"R² combination {r2['predicted_combination']:.2f}, η {r2['lr_alone']:.2f}, λ "
        f"{r2['lam_alone']:.2f}",
        "holds" if r2["predicted_combination"] >= max(0.5, r2["lr_alone"], r2["lam_alone"])
        else "does not hold"))
    return claims
