"""Study ``theory`` (Lewkowycz & Gur-Ari 2020, §5): the infinite-width gradient flow with L2
against wide networks.

The machinery is :func:`l2dynamics.studies.theory.run_theory_study`; its parameters are
:class:`~l2dynamics.studies.theory.TheoryStudy` (λ in flow units of the summed loss). Claims:
the flow's accuracy-peak and test-loss-minimum times scale as 1/λ; each network width's times
scale as 1/λ (judged against the flow run from the networks' own outputs); wider networks follow
the flow more closely in the lazy phase.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from l2dynamics.analysis.verdicts import Claim, slope_claim
from l2dynamics.studies.base import LG, Context, Figure, Study, table
from l2dynamics.studies.theory import TheoryStudy


class TheoryUnit(Study):
    key = "theory"
    title = "Infinite-width theory vs wide networks"
    paper = LG
    Params = TheoryStudy

    def run(self, params: TheoryStudy, ctx: Context) -> Any:
        from l2dynamics.studies.theory import run_theory_study

        result = run_theory_study(params, progress=ctx.log)
        result.description = (
            f"fc kernels (depth {params.depth}) on {params.dataset}, {params.n_train} train / "
            f"{params.n_test} test points, full batch; networks of widths {list(params.widths)} "
            f"at λ {list(params.lams)} (flow units) until λt = {params.horizon}")
        result.design = {"theory": asdict(params)}
        return result

    def claims(self, result: Any) -> list[Claim]:
        return theory_claims(result.fits, result.network_time_fits, result.comparisons,
                             result.time_labels)

    def figures(self, result: Any, ctx: Context) -> list[Figure]:
        from l2dynamics.report.theory import (
            plot_characteristic_times,
            plot_hessian,
            plot_network_times,
            plot_networks,
            plot_theory_curves,
        )

        figs = [Figure(plot_theory_curves(result, ctx.figure("theory_curves.png")),
                       "infinite-width gradient flow with L2: test accuracy against λ·t for the "
                       "deep kernel and the linear model", series=("λ=",)),
                Figure(plot_characteristic_times(result, ctx.figure("characteristic_times.png")),
                       "the theory's characteristic times against λ",
                       series=("accuracy peak", "1/λ"))]
        if not result.networks.empty:
            figs += [Figure(plot_networks(result, ctx.figure("networks.png")),
                            "finite networks against the infinite-width flow",
                            series=("width", "theory")),
                     Figure(plot_network_times(result, ctx.figure("network_times.png")),
                            "the networks' characteristic times against λ", series=("w=",))]
        if not result.hessian.empty:
            figs.append(Figure(plot_hessian(result, ctx.figure("hessian.png")),
                               "extreme eigenvalues of the regularized training-loss Hessian "
                               "during training, over λ", series=("λ=", "curvature = λ")))
        return figs

    def tables(self, result: Any) -> list[dict[str, Any]]:
        out = [table("power laws t ∝ λ^p of the theory's times", result.fits)]
        contrast = result.theory_times.pivot(index="lam", columns="model",
                                             values=["peak_acc", "final_acc"]).reset_index()
        contrast.columns = ["λ", "peak acc deep", "peak acc linear", "final acc deep",
                            "final acc linear"]
        out.append(table(f"deep (k={result.study.k}) vs linear (k=1) flow, final = λt "
                         f"{result.study.theory_horizon:g}", contrast))
        if not result.comparisons.empty:
            shown = result.comparisons[["width", "lam", "seed", "loss_rel_err_lazy_max",
                                        "loss_rel_err_all_rms", "t_star_net", "t_star_flow",
                                        "peak_acc_net", "peak_acc_flow", "lazy_until_lam_t"]]
            out.append(table("finite networks vs the infinite-width flow (flow units)", shown))
        summary = result.network_time_summary
        if len(result.study.seeds) > 1 and not summary.empty:
            over_seeds = summary[summary["source"] == "network"]
            out.append(table("network times over seeds (flow units; seed mean and its "
                             "interval; seen = inside the horizon)",
                             over_seeds[["width", "lam", "time", "seen", "seeds", "interval",
                                         "mean", "low", "high", "lam_t"]]))
        if not result.time_verdict.empty:
            out.append(table("which times scale as 1/λ (networks vs the flow from their own "
                             "outputs)", result.time_verdict))
        if not result.hessian.empty:
            last = result.hessian.sort_values("t").groupby(["width", "lam"]).tail(
                result.study.hessian_k)
            end = last.groupby(["width", "lam"]).agg(
                lam_t=("lam_t", "max"), smallest_over_lam=("bottom_over_lam", "min"),
                median_bottom_over_lam=("bottom_over_lam", "median")).reset_index()
            out.append(table("smallest Hessian eigenvalues / λ at the end of training", end))
        return out

    def data(self, result: Any) -> dict[str, Any]:
        frames = {name: getattr(result, name) for name in (
            "theory_times", "fits", "comparisons", "networks", "hessian", "network_times",
            "network_time_summary", "network_time_fits", "time_verdict")}
        return {**{k: v for k, v in frames.items() if not v.empty}, "summary": result.summary}


def theory_claims(fits: Any, network_fits: Any, comparisons: Any,
                  time_labels: dict[str, str]) -> list[Claim]:
    """The theory study's claims: the flow's accuracy-peak and loss-minimum times ∝ 1/λ (fits:
    time, range, slope, ci_low, ci_high, points), each network width's characteristic times
    ∝ 1/λ (network_fits of :func:`analysis.times.network_time_fits`, source "network"), both
    with the slope margin of :func:`analysis.verdicts.slope_claim`, and whether wider networks
    follow the flow more closely."""
    import numpy as np

    claims = []
    for fit in fits.to_dict(orient="records"):
        if fit["time"] in ("t_peak", "t_loss_min") and fit["range"] == "all λ":
            claims.append(slope_claim(f"infinite-width flow: {time_labels[fit['time']]} "
                                      "time ∝ 1/λ", fit, -1.0))
    rows = network_fits.to_dict(orient="records") if not network_fits.empty else []
    for fit in (r for r in rows if r["source"] == "network"):
        claim = slope_claim(f"network (width {fit['width']}): {time_labels[fit['time']]} "
                            "∝ 1/λ", fit, -1.0)
        if fit.get("lams", 0) < 2 and claim.verdict != "undetermined":
            claim.verdict = "undetermined"
            claim.measured += " (seen at fewer than 2 values of λ)"
        claims.append(claim)
    if not comparisons.empty:
        worst = comparisons.groupby("width")["loss_rel_err_lazy_max"].max()
        trend = bool(np.all(np.diff(worst.to_numpy()) <= 0)) if len(worst) > 1 else None
        claims.append(Claim(
            "wider networks follow the infinite-width flow more closely (max relative test-loss "
            "error in the lazy phase falls with width)",
            ", ".join(f"width {w}: {e:.3g}" for w, e in worst.items()),
            "undetermined" if trend is None else "holds" if trend else "does not hold"))
    return claims
