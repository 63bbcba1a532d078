"""Study ``regime``: where does t* ∝ 1/λ hold? A map over training-set size × width × loss on
Fashion-MNIST, and a CNN without and with BatchNorm at two widths.

Each FC cell (n_train, width, loss) trains a 2-hidden-layer FC network in NTK parameterization
with SGD (full-batch when n_train ≤ ``batch_size``); each CNN cell (n_train, channels, norm,
loss) a 4-layer CNN in standard parameterization with plain SGD, at its own η (``cnn_lr``,
``cnn_second_lr``), budget (``cnn_fixed_steps``) and λ: the FC cells' λ scaled so that λ·η·T of
the fixed arm, the dimensionless time the law is stated in, spans the same values. Every cell has

- the **fixed-budget arm**: λ = 0 and every λ > 0 of the cell, its fixed steps each, at the
  main η and at a second η;
- the **inverse arm** at the main η: every λ > 0 trained until λ·η·t = ``horizon``
  (steps = horizon/(ηλ)), the budget ∝ 1/(ηλ) of the paper's protocol;
- ``seeds`` seeds everywhere.

Per cell, :func:`~l2dynamics.analysis.regime.cell_summary`: whether test accuracy peaks or
plateaus, the share of runs that fit their training data (a measured axis, not a filter), the
t* slope over the fixed arm and its verdict (downgraded when the inverse arm's t* disagree),
c·η and its η-independence, and the gain of the best λ over λ = 0. One claim per cell on
t* ∝ 1/λ; the map's boundary along parameters per training example
(:func:`~l2dynamics.analysis.regime.regime_boundary`) is written into the result, where the λ
selector reads it (:func:`regime_rule`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2dynamics.analysis.peak import ESTIMATORS
from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import (
    Choice,
    Choices,
    Floats,
    Int,
    Ints,
    PlainMapping,
    Real,
)
from l2dynamics.studies.base import LG, TEXT, Context, Figure, Study, param, table

# The probe that showed a peak at t* ∝ 1/λ on real images (issue 22): Fashion-MNIST, FC 2×512
# in NTK parameterization, MSE, full-batch GD with η = 1. The grid keeps its η, depth and
# parameterization and varies the training-set size, the width and the loss.
REGIME_BASE = {"dataset": "fashion_mnist", "n_test": 2000, "model": "fc", "depth": 2,
               "parameterization": "ntk", "optimizer": "sgd", "batch_size": 256,
               "eval_per_decade": 10, "eval_train_size": 512, "norms_per_tensor": False}
# The CNN cells: the package's 4-layer CNN (as fmnist_cnn_bn), plain SGD with batch 64 and 1 000
# test images, sized so that its four cells run in about an hour on a 2-core CPU (a 300-step
# timing of each width and norm, not results).
REGIME_CNN_BASE = {"dataset": "fashion_mnist", "n_test": 1000, "model": "cnn", "depth": 4,
                   "optimizer": "sgd", "batch_size": 64, "channels_last": True,
                   "eval_per_decade": 10, "eval_train_size": 512, "norms_per_tensor": False}


@dataclass(frozen=True)
class RegimeCell:
    """One cell of the map: a network (``"fc"``, ``"cnn"`` or ``"cnn+bn"``) of `width`
    (hidden units or channels) on `n_train` images with one loss, and its runs' η (main and
    second, per update), fixed-arm steps, λ > 0 (the coefficient of λ/2·‖θ‖²) and inverse-arm
    horizon (λ·η·t)."""

    network: str
    n_train: int
    width: int
    loss: str
    lr: float
    second_lr: float
    fixed_steps: int
    lams: tuple[float, ...]
    horizon: float
    base: dict[str, Any] = field(compare=False, repr=False)

    def config(self, lr: float, lam: float, steps: int, seed: int) -> dict[str, Any]:
        return {**self.base, "n_train": self.n_train, "width": self.width, "loss": self.loss,
                "lr": lr, "lam": lam, "steps": steps, "seed": seed}

    def points(self) -> list[tuple[float, float, int]]:
        """(η, λ, steps) of every run of this cell and one seed: both arms."""
        fixed = [(eta, lam, self.fixed_steps) for eta in (self.lr, self.second_lr)
                 for lam in (0.0, *self.lams)]
        inverse = [(self.lr, lam, max(1, round(self.horizon / (self.lr * lam))))
                   for lam in self.lams]
        return fixed + [p for p in inverse if p not in fixed]

    def label(self) -> str:
        return f"{self.network}, n_train {self.n_train}, width {self.width}, {self.loss}"


@dataclass
class RegimeParams:
    base: dict[str, Any] = param(REGIME_BASE, PlainMapping("lr: 0.1"),
                                 "the network's config (flat keys) without n_train, width, "
                                 "loss, lr, λ, seed, steps")
    n_trains: tuple[int, ...] = param((256, 2048), Ints(Int(ge=1)),
                                      "class-balanced training-set sizes", unit="examples")
    widths: tuple[int, ...] = param((16, 64, 128), Ints(Int(ge=1)), "hidden widths")
    losses: tuple[str, ...] = param(("mse", "ce"), Choices(Choice(("mse", "ce"))),
                                    "losses: mse (½·Σ_classes (f − y)², as the theory) and ce")
    lams: tuple[float, ...] = param((1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2), Floats(Real(gt=0)),
                                    "λ > 0 of every cell (λ = 0 is added to the fixed arm)")
    lr: float = param(1.0, Real(gt=0), "the main η", unit="per update")
    second_lr: float = param(0.5, Real(gt=0), "the second η of the fixed arm (c·η's "
                             "η-independence)", unit="per update")
    fixed_steps: int = param(2000, Int(ge=1), "steps of every fixed-arm run", unit="steps")
    horizon: float = param(4.0, Real(gt=0), "inverse arm: train until λ·η·t = horizon")
    seeds: tuple[int, ...] = param((0, 1, 2), Ints(Int(ge=0)), "seeds of every run")
    estimator: str = param("smoothed", Choice(ESTIMATORS), "t* estimator")
    hessian_iters: int = param(40, Int(ge=0), "Lanczos iterations for the smallest eigenvalue "
                               "of the regularized training-loss Hessian after the last update "
                               "of each λ > 0 fixed-arm run at the main η, first seed, FC "
                               "cells only (0: not measured)")
    train_threshold: float = param(0.99, Real(gt=0.0, le=1.0),
                                   "a run fits its data when its training accuracy reaches this")
    description: str = param(
        "Fashion-MNIST: FC with 2 hidden layers in NTK parameterization, SGD with batch 256 "
        "(full-batch for 256 images), 2 000 test images; CNN of 4 conv layers without and with "
        "BN, SGD with batch 64, 1 000 test images", TEXT,
        "what was run, in words, for the report (the grid is appended from the design)")

    cnn_base: dict[str, Any] = param(REGIME_CNN_BASE, PlainMapping("lr: 0.1"),
                                     "the CNN cells' config (flat keys) without n_train, "
                                     "width, norm, loss, lr, λ, seed, steps")
    cnn_widths: tuple[int, ...] = param((8, 16), Ints(Int(ge=1)),
                                        "the CNN cells' channels (empty: no CNN cells)")
    cnn_norms: tuple[str, ...] = param(("none", "bn"), Choices(Choice(("none", "bn"))),
                                       "the CNN cells' normalization: none and BatchNorm")
    cnn_n_trains: tuple[int, ...] = param((2048,), Ints(Int(ge=1)),
                                          "the CNN cells' training-set sizes", unit="examples")
    cnn_losses: tuple[str, ...] = param(("ce",), Choices(Choice(("mse", "ce"))),
                                        "the CNN cells' losses")
    cnn_lr: float = param(0.2, Real(gt=0), "the CNN cells' main η (0.02 with momentum 0.9 in "
                          "fmnist_cnn_bn: 0.2 per update in the long run)", unit="per update")
    cnn_second_lr: float = param(0.1, Real(gt=0), "the CNN cells' second η", unit="per update")
    cnn_fixed_steps: int = param(1000, Int(ge=1), "steps of every CNN fixed-arm run; the CNN "
                                 "cells' λ are lams × (lr·fixed_steps)/(cnn_lr·cnn_fixed_steps)",
                                 unit="steps")

    def cells(self) -> list[RegimeCell]:
        """The FC cells (loss, width, n_train), then the CNN cells (loss, norm, width,
        n_train)."""
        fc = [RegimeCell("fc", n, w, loss, self.lr, self.second_lr, self.fixed_steps,
                         tuple(self.lams), self.horizon, dict(self.base))
              for loss in self.losses for w in self.widths for n in self.n_trains]
        scale = (self.lr * self.fixed_steps) / (self.cnn_lr * self.cnn_fixed_steps)
        cnn = [RegimeCell("cnn+bn" if norm == "bn" else "cnn", n, w, loss, self.cnn_lr,
                          self.cnn_second_lr, self.cnn_fixed_steps,
                          tuple(lam * scale for lam in self.lams), self.horizon,
                          {**self.cnn_base, "norm": norm})
               for loss in self.cnn_losses for norm in self.cnn_norms
               for w in self.cnn_widths for n in self.cnn_n_trains]
        return fc + cnn


@dataclass
class RegimeResult:
    cells: Any  # one row per cell: its keys, parameters per example and cell_summary()
    runs: Any  # the t* table of every run, with n_train, width and loss
    boundary: dict[str, Any]
    description: str
    design: dict[str, Any] = field(default_factory=dict)


class RegimeStudy(Study):
    key = "regime"
    title = "Where t* ∝ 1/λ holds: a regime map on Fashion-MNIST"
    paper = LG
    Params = RegimeParams
    distributed = True

    def run(self, params: RegimeParams, ctx: Context) -> RegimeResult:
        import pandas as pd

        from l2dynamics.analysis.regime import (
            cell_summary,
            cells_frame,
            parameters_per_example,
            regime_boundary,
        )
        from l2dynamics.config import make_config
        from l2dynamics.studies.runs import tstar_runs
        from l2dynamics.train.grouping import parameter_count

        rows, tables = [], []
        cells = params.cells()
        for k, cell in enumerate(cells, 1):
            configs = [make_config(cell.config(lr, lam, steps, s))
                       for lr, lam, steps in cell.points() for s in params.seeds]
            ctx.log(f"{ctx.key}: cell {k}/{len(cells)} ({cell.label()}): {len(configs)} runs")
            part = tstar_runs(configs, ctx, train_threshold=params.train_threshold)
            keys = {"network": cell.network, "n_train": cell.n_train, "width": cell.width,
                    "loss": cell.loss}
            tables.append(part.assign(**keys))
            count = parameter_count(configs[0])
            hessian = _hessian_ratios(params, cell, f"{k}/{len(cells)}", ctx.log)
            rows.append({**keys, "parameters": count,
                         "params_per_example": parameters_per_example(count, cell.n_train),
                         **cell_summary(part, fixed_steps=cell.fixed_steps, lr=cell.lr,
                                        second_lr=cell.second_lr,
                                        estimator=params.estimator), **hessian})
        frame = cells_frame(rows)
        what = (f"{params.description}; FC cells: n_train ∈ {{{_join(params.n_trains)}}} × "
                f"width ∈ {{{_join(params.widths)}}} × loss ∈ {{{', '.join(params.losses)}}}; "
                f"λ ∈ {{0, {_join(params.lams)}}}; fixed arm {params.fixed_steps} steps at "
                f"η ∈ {{{params.lr:g}, {params.second_lr:g}}}; inverse arm to λ·η·t = "
                f"{params.horizon:g} at the main η")
        cnn = [c for c in cells if c.network != "fc"]
        if cnn:
            what += (f"; CNN cells: n_train ∈ {{{_join(params.cnn_n_trains)}}} × channels ∈ "
                     f"{{{_join(params.cnn_widths)}}} × norm ∈ {{{', '.join(params.cnn_norms)}}}"
                     f" × loss ∈ {{{', '.join(params.cnn_losses)}}}; λ ∈ {{0, "
                     f"{_join(cnn[0].lams)}}}; fixed arm {params.cnn_fixed_steps} steps at "
                     f"η ∈ {{{params.cnn_lr:g}, {params.cnn_second_lr:g}}}")
        what += f"; {len(params.seeds)} seeds; t* estimator: {params.estimator}"
        design = {"base": dict(params.base), "cnn_base": dict(params.cnn_base),
                  "cells": [{**dataclasses.asdict(c), "points": c.points()} for c in cells],
                  "seeds": list(params.seeds)}
        return RegimeResult(frame, pd.concat(tables, ignore_index=True),
                            regime_boundary(frame), what, design)

    def claims(self, result: RegimeResult) -> list[Claim]:
        from l2dynamics.analysis.regime import boundary_sentence, map_verdict

        claims = []
        for cell in result.cells.to_dict(orient="records"):
            where = (f"({_network(cell)}, n_train {cell['n_train']}, width {cell['width']}, "
                     f"{cell['loss']}; {cell['params_per_example']:.3g} parameters per example)")
            budget = ("" if cell["budget_ok"] is None else
                      f"; inverse-arm t* / fixed-arm t* = {cell['budget_ratio']:.2f} over "
                      f"{cell['budget_runs']} runs")
            claims.append(Claim(
                f"{where} t* ∝ 1/λ", f"{cell['shape']} in {cell['peak_share']:.0%} of the "
                f"λ > 0 runs; {cell['fit_share']:.0%} fit their training data; "
                f"{cell['slope_text']}{budget}", cell["verdict"],
                f"95 % t-interval of the slope, n = {cell['slope_runs']} runs: "
                f"[{cell['slope_low']:.2f}, {cell['slope_high']:.2f}]"
                if cell["slope_runs"] >= 3 else None))
        claims.append(Claim("the map: t* ∝ 1/λ holds in at least one cell",
                            boundary_sentence(result.boundary), map_verdict(result.boundary)))
        return claims

    def figures(self, result: RegimeResult, ctx: Context) -> list[Figure]:
        from l2dynamics.report.regime import plot_regime_map

        return [Figure(plot_regime_map(result.cells, ctx.figure("regime_map.png")),
                       "per cell (training-set size × width, one row per network and loss): "
                       "the verdict on "
                       "t* ∝ 1/λ, whether accuracy peaks, the share of runs that fit their "
                       "training data, the gain of the best λ over λ = 0 (points) and c·η at "
                       "the second η over the main η", series=())]

    def tables(self, result: RegimeResult) -> list[dict[str, Any]]:
        cols = ["network", "loss", "width", "n_train", "params_per_example", "shape", "peak_share",
                "fit_share", "slope", "slope_low", "slope_high", "slope_runs", "budget_ratio",
                "verdict", "c_eta", "c_eta_ratio", "c_eta_verdict", "gain", "gain_low",
                "gain_high", "gain_verdict", "hessian_median", "hessian_min"]
        return [table("cells", result.cells[cols])]

    def data(self, result: RegimeResult) -> dict[str, Any]:
        return {"regime_cells": result.cells, "regime_runs": result.runs,
                "regime_boundary": result.boundary}


class EndHessian:
    """Callback: the smallest eigenvalue of ∇²(L + λ/2·‖θ‖²) over the whole training set after
    the run's last update (:func:`~l2dynamics.probes.hessian.hessian_extremes`, Lanczos)."""

    def __init__(self, iters: int = 40):
        self.iters, self.smallest = iters, math.nan

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        if step != trainer.cfg.steps:
            return
        from l2dynamics.probes.hessian import hessian_extremes

        spectrum = hessian_extremes(trainer.model, trainer.loss_fn, trainer.data.x_train,
                                    trainer.data.y_train, lam=trainer.penalty.lam,
                                    decayed=trainer.decay.decayed, k=1, iters=self.iters)
        self.smallest = float(min(spectrum.bottom))


def _hessian_ratios(params: RegimeParams, cell: RegimeCell, which: str,
                    log: Any) -> dict[str, Any]:
    """λ_min(∇²L_λ)/λ at the end of each λ > 0 fixed-arm run at the main η, first seed (the
    runs are trained again, unstored: the store keeps no weights). 1 is the value of a flat
    direction of the data loss; below 1, the data loss curves down. Median and minimum over λ,
    and each λ's value. FC cells only: a CNN's Hessian over the whole training set costs more
    than its runs, and BatchNorm's batch statistics over it are not those it trained with."""
    if not params.hessian_iters or not cell.lams or cell.network != "fc":
        return {"hessian_median": math.nan, "hessian_min": math.nan, "hessian_by_lam": "{}"}
    import numpy as np

    from l2dynamics.config import make_config
    from l2dynamics.train import Trainer

    log(f"  cell {which}: the Hessian's smallest eigenvalue at the end of "
        f"{len(cell.lams)} runs")
    ratios = {}
    for lam in cell.lams:
        cfg = make_config(cell.config(cell.lr, lam, cell.fixed_steps, params.seeds[0]))
        probe = EndHessian(params.hessian_iters)
        Trainer(cfg, callbacks=[probe]).run()
        ratios[lam] = probe.smallest / lam
    values = np.array(list(ratios.values()), float)
    return {"hessian_median": float(np.nanmedian(values)), "hessian_min": float(np.nanmin(values)),
            "hessian_by_lam": json.dumps({f"{lam:g}": v for lam, v in ratios.items()})}


def _join(values: Any) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _network(cell: dict[str, Any]) -> str:
    """A cell's network in words ("FC", "CNN", "CNN + BN"); a map recorded before the CNN
    cells has no network column: FC."""
    from l2dynamics.analysis.regime import NETWORK_NAMES

    network = cell.get("network") or "fc"
    return NETWORK_NAMES.get(network, str(network))


MAP_FILE = Path(__file__).resolve().parent / "suites" / "regime_map.json"
"""The recorded map's rule, shipped with the package: written from
``benchmarks/results/regime.json`` by ``scripts/update_regime_map.py``."""


def regime_rule(path: Path | None = None) -> dict[str, Any] | None:
    """The recorded map (:data:`MAP_FILE`, or `path`): its boundary along parameters per
    training example, what it was measured on, and its cells' verdicts. The λ selector cites it
    when it judges its premise. None when no map has been recorded."""
    path = MAP_FILE if path is None else Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def regime_side(cfg: Any, n_train: int | None = None, path: Path | None = None) -> str | None:
    """Which side of the recorded map's boundary `cfg` falls on, by its parameters per training
    example: ``"holding"`` (at or above the smallest value where t* ∝ 1/λ held), ``"failing"``
    (at or below the largest where it did not), ``"between"``; None when no map is recorded,
    the map's verdicts are not separated by that variable, or the training-set size is
    unknown. The λ selector does not predict on the failing side."""
    rule = regime_rule(path)
    n = cfg.n_train or n_train
    if rule is None or not n or not rule["boundary"].get("separates"):
        return None
    from l2dynamics.train.grouping import parameter_count

    ppe, boundary = parameter_count(cfg) / n, rule["boundary"]
    if ppe >= boundary["lowest_holding"]:
        return "holding"
    return "failing" if ppe <= boundary["highest_failing"] else "between"


def regime_note(cfg: Any, n_train: int | None = None, path: Path | None = None) -> str:
    """What the recorded regime map says about `cfg`, in one sentence: its parameters per
    training example (`n_train` when the config leaves it to the dataset), where the map put
    the boundary of t* ∝ 1/λ, and which side of it this config falls on."""
    rule = regime_rule(path)
    if rule is None:
        return ("no regime map is recorded (l2dynamics reproduce --suite regime, then "
                "scripts/update_regime_map.py)")
    from l2dynamics.train.grouping import parameter_count

    n = cfg.n_train or n_train
    if not n:
        return f"regime map: {rule['sentence']}"
    ppe = parameter_count(cfg) / n
    text = (f"{ppe:.3g} parameters per training example; the regime map "
            f"({rule['measured_on']}): {rule['sentence']}")
    cells = [c for c in rule.get("cells", []) if c.get("params_per_example")]
    if cells:
        gap = min(abs(math.log(c["params_per_example"] / ppe)) for c in cells)
        near = [c for c in cells if abs(math.log(c["params_per_example"] / ppe)) <= gap + 1e-9]
        text += (f" Its nearest cells ({near[0]['params_per_example']:.3g} parameters per "
                 "example): " + "; ".join(f"{_network(c)}, {c['n_train']} images, width "
                                          f"{c['width']}, {c['loss']}: {c['verdict']}"
                                          for c in near) + ".")
    side = regime_side(cfg, n_train, path)
    if side is not None:
        text += " This config is " + {
            "holding": "at or above the smallest value where the law held",
            "failing": "at or below the largest value where it failed",
            "between": "between the two, where the map has no cell"}[side]
        text += (f"; the map is of {rule['network']}, and other networks may differ."
                 if rule.get("network") else ".")
    return text
