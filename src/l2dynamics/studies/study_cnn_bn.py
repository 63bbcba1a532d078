"""Study ``fmnist_cnn_bn``: a CNN without and with BatchNorm on Fashion-MNIST, under both papers.

The same runs for each norm (``none``, ``bn``), every run the same number of steps (so no budget
∝ 1/λ can shape t*):

- a λ line at η₀: λ = 0 and the λ > 0 of ``lams``;
- the runs that share η₀·``iso_lam`` (a point of the λ line): η = f·η₀ with λ = ``iso_lam``/f
  for each f of ``iso_factors``.

Claims, per norm, in this order:

1. how much L2 matters: the best λ > 0 against λ = 0 at η₀ on final test accuracy
   (:func:`~l2dynamics.analysis.l2_effect.l2_effect_claim`);
2. Lewkowycz & Gur-Ari: t* ∝ 1/λ on the λ line, with the slope margin and the budget check, "some
   λ > 0 beats λ = 0" on peak accuracy, and "flat in small λ"
   (:func:`~l2dynamics.analysis.tstar_verdicts.tstar_claims`);
3. van Laarhoven: with BN, λ only sets the effective learning rate of the scale-invariant conv
   weights, whose equilibrium depends on η and λ through η·λ alone (SGD; see
   :mod:`l2dynamics.studies.norms`), so the runs at equal η·λ reach the same final test accuracy
   (an equivalence test with a margin of ±1 point). The prediction is for BN; the same rule on the
   CNN without BN shows what the same runs do where nothing predicts it. The readout layer and
   BN's γ, β are not scale-invariant: they see η itself, which the margin must absorb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.peak import ESTIMATORS
from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import Choice, Floats, Int, Ints, PlainMapping, Real
from l2dynamics.studies.base import LG, TEXT, VL, Context, Figure, Study, param, table

ISO_MARGIN = 0.01  # "the same final accuracy": every pair of η within ±1 point
NORMS = ("none", "bn")
# The issue's CNN: 4 conv layers of 16 channels, max-pools after the 2nd and 4th, the mean over
# positions into a linear readout. (A first design with 2 layers of 8 channels averaged only 8
# channels into its readout and reached 0.56–0.60 test accuracy: see the suites' changelogs.)
CNN_BASE = {"dataset": "fashion_mnist", "n_train": 4000, "n_test": 2000, "model": "cnn",
            "width": 16, "depth": 4, "optimizer": "sgd", "momentum": 0.9, "batch_size": 64,
            "channels_last": True, "eval_per_decade": 10, "eval_train_size": 512,
            "norms_per_tensor": False}


@dataclass
class CnnBnParams:
    base: dict[str, Any] = param(CNN_BASE, PlainMapping("lr: 0.1"),
                                 "the CNN's config (flat keys) without norm, lr, λ, seed, steps")
    lr: float = param(0.02, Real(gt=0), "η₀, the learning rate of the λ line")
    lams: tuple[float, ...] = param((5e-3, 2e-2, 8e-2), Floats(Real(gt=0)),
                                    "λ > 0 of the λ line at η₀ (λ = 0 is added)")
    iso_lam: float = param(2e-2, Real(gt=0), "the λ whose η₀·λ the equal-ηλ runs share")
    iso_factors: tuple[float, ...] = param((0.5, 2.0), Floats(Real(gt=0)),
                                           "η = f·η₀ and λ = iso_lam/f for each f")
    steps: int = param(800, Int(ge=1), "steps of every run", unit="steps")
    seeds: tuple[int, ...] = param((0, 1, 2), Ints(Int(ge=0)), "seeds of every run")
    estimator: str = param("onset", Choice(ESTIMATORS), "t* estimator")
    train_threshold: float = param(0.99, Real(gt=0.0, le=1.0),
                                   "a run fits its data when its training accuracy reaches this")
    description: str = param(
        "Fashion-MNIST (4 000 train, 2 000 test), 4-layer CNN of 16 channels without and with "
        "BN, SGD with momentum 0.9, batch 64", TEXT, "what was run, in words, for the report "
        "(η, λ, steps and seeds are appended from the design itself)")

    def points(self) -> list[tuple[float, float]]:
        """(η, λ) of every run of one norm and seed: the λ line, then the equal-ηλ runs."""
        line = [(self.lr, 0.0)] + [(self.lr, float(lam)) for lam in self.lams]
        iso = [(self.lr * f, self.iso_lam / f) for f in self.iso_factors]
        return line + [p for p in iso if p not in line]


@dataclass
class CnnBnResult:
    table: Any  # tstar_table's rows with a "norm" column
    lr: float
    iso: list[tuple[float, float]]
    steps: int
    estimator: str
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class CnnBnStudy(Study):
    key = "fmnist_cnn_bn"
    title = "Fashion-MNIST (CNN ± BN): L2's effect, t* ∝ 1/λ, and λ as an effective LR"
    paper = f"{LG}; {VL}"
    Params = CnnBnParams
    distributed = True

    def run(self, params: CnnBnParams, ctx: Context) -> CnnBnResult:
        import pandas as pd

        from l2dynamics.config import make_config
        from l2dynamics.studies.runs import tstar_runs

        points = params.points()
        tables = []
        for norm in NORMS:
            configs = [make_config({**params.base, "norm": norm, "lr": lr, "lam": lam,
                                    "seed": seed, "steps": params.steps})
                       for lr, lam in points for seed in params.seeds]
            ctx.log(f"{ctx.key} (norm={norm}): {len(configs)} runs of {params.steps} steps")
            part = tstar_runs(configs, ctx, train_threshold=params.train_threshold)
            tables.append(part.assign(norm=norm))
        iso = [(params.lr, params.iso_lam)] + points[1 + len(params.lams):]
        what = (f"{params.description}; η₀ = {params.lr:g}, λ ∈ {{0, "
                f"{', '.join(f'{x:g}' for x in params.lams)}}}; equal η·λ = "
                f"{params.lr * params.iso_lam:g} at η ∈ {{{', '.join(f'{e:g}' for e, _ in iso)}}}"
                f"; {params.steps} steps; {len(params.seeds)} seeds; t* estimator: "
                f"{params.estimator}")
        design = {"base": dict(params.base), "points": points, "steps": params.steps,
                  "seeds": list(params.seeds)}
        return CnnBnResult(pd.concat(tables, ignore_index=True), params.lr, iso, params.steps,
                           params.estimator, what, design)

    def claims(self, result: CnnBnResult) -> list[Claim]:
        return cnn_bn_claims(result.table, result.lr, result.iso, result.estimator)

    def figures(self, result: CnnBnResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.figures import plot_cnn_bn

        return [Figure(plot_cnn_bn(result.table, result.lr, result.iso,
                                   ctx.figure("cnn_bn.png"), estimator=result.estimator),
                       f"final test accuracy against λ at η = {result.lr:g} (λ = 0 at the left "
                       "edge), t* against λ, and final test accuracy of the runs at equal η·λ; "
                       "seed means with 95 % t-intervals, without and with BN",
                       series=("no BN", "BN"))]

    def tables(self, result: CnnBnResult) -> list[dict[str, Any]]:
        cols = ["norm", "lr", "lam", "seed", "status", "final_acc", "peak_acc",
                f"tstar_{result.estimator}", f"censored_{result.estimator}", "fits_train"]
        return [table("runs", result.table[cols].sort_values(["norm", "lr", "lam", "seed"]))]

    def data(self, result: CnnBnResult) -> dict[str, Any]:
        return {"cnn_bn_runs": result.table}


def _label(norm: str) -> str:
    return "(no BN) " if norm == "none" else "(BN) "


def cnn_bn_claims(runs: Any, lr: float, iso: list[tuple[float, float]], estimator: str
                  ) -> list[Claim]:
    """The claims of the module docstring from a runs table (``norm``, ``lr``, ``lam``,
    ``final_acc`` and :func:`~l2dynamics.analysis.tstar.tstar_table`'s columns)."""
    import numpy as np

    from l2dynamics.analysis.equivalence import groups_equivalence_claim
    from l2dynamics.analysis.l2_effect import groups_by_lam, l2_effect_claim
    from l2dynamics.analysis.tstar import tstar_claims

    at_lr = {norm: runs[(runs["norm"] == norm) & np.isclose(runs["lr"], lr)] for norm in NORMS}
    steps = int(runs["steps"].max()) if len(runs) else 0
    claims = [l2_effect_claim(groups_by_lam(at_lr[norm], "final_acc"),
                              label=f"{_label(norm)}(η={lr:g}, {steps} steps) ")
              for norm in NORMS]
    for norm in NORMS:
        claims += tstar_claims(at_lr[norm], estimator, _label(norm))
    product = iso[0][0] * iso[0][1]
    for norm in NORMS:
        mine = runs[runs["norm"] == norm]
        groups = {eta: mine.loc[np.isclose(mine["lr"], eta) & np.isclose(mine["lam"], lam),
                                "final_acc"].to_list() for eta, lam in iso}
        note = "" if norm == "bn" else ", where the paper predicts nothing"
        claims.append(groups_equivalence_claim(
            f"{_label(norm)}λ only sets the effective learning rate: the runs at the same "
            f"η·λ = {product:g} (η ∈ {{{', '.join(f'{e:g}' for e, _ in iso)}}}) reach the same "
            f"final test accuracy within ±{100 * ISO_MARGIN:g} point{note}", groups,
            ISO_MARGIN, what="final test accuracy"))
    return claims
