"""Study ``norm_projection`` (van Laarhoven 2017, Fig. 3): final test error against λ with plain
L2 and with the ‖w‖ = const update, which holds each scale-invariant unit at its initial norm
(:func:`l2dynamics.studies.norms.projection_vs_l2`).

Claim: with ‖w‖ = const the test error hardly depends on λ ≤ 1e-2 (an equivalence test: every
pair of those λ within ±1 point of test error, by Welch intervals over seeds). With ``config``
the runs are a paper config's (ConvNet4 on CIFAR-10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.equivalence import groups_equivalence_claim
from l2dynamics.analysis.verdicts import Claim, test_noise_se
from l2dynamics.config.constraints import Choice, Floats, Int, Ints, PlainMapping, Real
from l2dynamics.studies.base import TEXT, VL, Context, Figure, Study, param, table
from l2dynamics.studies.study_norm_equilibrium import NORM_MINI

SMALL_LAM = 1e-2  # "small λ": the L2 gradient does not dominate Adam's second moment
MARGIN = 0.01  # "hardly depends": no two small λ differ by a point of test error or more


@dataclass
class ProjectionParams:
    lams: tuple[float, ...] = param((0.0, 1e-3, 1e-2, 1e-1, 1.0), Floats(Real(ge=0)),
                                    "λ of the runs")
    base: dict[str, Any] = param(NORM_MINI, PlainMapping('lr: 0.1'),
                                 "overrides of the BN network's config")
    optimizer: str = param("adam", Choice(("adam", "sgd")), "optimizer")
    lr: float = param(1e-3, Real(gt=0), "learning rate η")
    steps: int = param(1500, Int(ge=1), "steps per run", unit="steps")
    seeds: tuple[int, ...] = param((0,), Ints(Int(ge=0)), "seeds of every λ and mode")
    config: str = param("", TEXT,
                        "a packaged paper config to run instead (needs --data-dir)")
    description: str = param(
        "Adam η = 1e-3 on the BN MLP, 1 500 steps, plain L2 vs the ‖w‖ = const update", TEXT,
        "what was run, for the report")


@dataclass
class ProjectionResult:
    table: Any  # one row per (mode, lam, seed): test_error, …
    n_test: int
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class NormProjectionStudy(Study):
    key = "norm_projection"
    title = "The ‖w‖ = const update"
    paper = VL
    Params = ProjectionParams

    def run(self, params: ProjectionParams, ctx: Context) -> ProjectionResult:
        from l2dynamics.studies.norms import BASE, projection_vs_l2
        from l2dynamics.studies.suite import full_base, paper_spec, paper_what

        base, lams, seeds = dict(params.base), params.lams, params.seeds
        opt, lr, steps = params.optimizer, params.lr, params.steps
        what, design = params.description, {"lams": list(lams)}
        if params.config:
            spec = paper_spec(ctx, params.config)
            base, grid = full_base(spec), spec["grid"]
            lams, seeds = tuple(grid["lam"]), tuple(grid.get("seed", (0,)))
            opt, lr, steps = base["optimizer"], base["lr"], base["steps"]
            what, design = paper_what(ctx, params.description, params.config, spec), \
                {"sweep": spec}
        frame = projection_vs_l2(lams, base=base, optimizer=opt, lr=lr, steps=steps,
                                 seeds=seeds, store=ctx.store, workers=ctx.workers,
                                 progress=ctx.log)
        # n_test None: the dataset's whole test set (10 000 for MNIST and CIFAR-10)
        n_test = {**BASE, **base}.get("n_test") or 10000
        return ProjectionResult(frame, int(n_test), what, design)

    def claims(self, result: ProjectionResult) -> list[Claim]:
        return [projection_claim(result.table, result.n_test)]

    def figures(self, result: ProjectionResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_projection_study

        return [Figure(plot_projection_study(result.table, ctx.figure("projection.png")),
                       "final test error against λ, plain L2 and ‖w‖ = const",
                       series=("plain L2", "‖w‖ = const"))]

    def tables(self, result: ProjectionResult) -> list[dict[str, Any]]:
        summary = (result.table.groupby(["mode", "lam"])["test_error"].mean()
                   .unstack("mode").reset_index())
        return [table("final test error", summary)]

    def data(self, result: ProjectionResult) -> dict[str, Any]:
        return {"projection": result.table}


def projection_claim(frame: Any, n_test: int) -> Claim:
    """With ‖w‖ = const, the final test error hardly depends on λ ≤ 1e-2: every pair of those λ
    differs by less than 1 point (Welch intervals over seeds; the test-noise SE of one error
    rate on `n_test` examples is given for scale)."""
    proj = frame[(frame["mode"] == "projected") & (frame["lam"] <= SMALL_LAM)]
    groups = {float(lam): g["test_error"].to_list() for lam, g in proj.groupby("lam")}
    claim = groups_equivalence_claim(
        "with ‖w‖ = const, test error hardly depends on λ ≤ 1e-2 (every pair of λ within ±1 "
        "point)", groups, MARGIN, what="test error")
    noise = test_noise_se(float(proj["test_error"].mean()) if len(proj) else float("nan"),
                          n_test)
    claim.measured += f"; test-noise SE of one error rate {noise:.4f}"
    return claim
