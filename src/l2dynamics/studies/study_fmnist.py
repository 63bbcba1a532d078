"""Studies ``fmnist_tstar`` and ``fmnist_tuning``: the first paper's FC experiment and the choice
of λ for a budget, on real images (Fashion-MNIST, ``dataset=fashion_mnist``).

They are :class:`~l2dynamics.studies.study_tstar.TstarStudy` and
:class:`~l2dynamics.studies.study_tuning.TuningStudy` with Fashion-MNIST designs as their
defaults (the mini suite's; the ``realdata`` suite scales them up). Each opens with how much L2
matters on this data: the best λ against λ = 0 at one budget, with its interval
(:func:`~l2dynamics.analysis.l2_effect.l2_effect_claim`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from l2dynamics.config.constraints import Floats, Int, Ints, PlainMapping, Real
from l2dynamics.studies.base import TEXT, param
from l2dynamics.studies.study_tstar import TstarParams, TstarStudy
from l2dynamics.studies.study_tuning import TuningParams, TuningStudy

# The FC network both studies train: 2 hidden layers of 128 ReLU units on 4 000 class-balanced
# training images (few enough that λ = 0 fits them, the papers' over-parameterized regime),
# plain SGD η = 0.2, batch 128; 5 000 test images (test-noise SE of an accuracy near 0.85:
# 0.5 points).
FMNIST_FC = {"dataset": "fashion_mnist", "n_train": 4000, "n_test": 5000, "model": "fc",
             "width": 128, "depth": 2, "optimizer": "sgd", "lr": 0.2, "batch_size": 128,
             "eval_per_decade": 10, "norms_per_tensor": False}
FMNIST_SWEEP = {
    "name": "fmnist-tstar",
    "base": FMNIST_FC,
    "grid": {"lam": [0.0, 5e-3, 1e-2, 2e-2, 4e-2], "seed": [0, 1, 2]},
    "budget": {"rule": "inverse_lam", "k": 8.0, "physical": True, "min_steps": 1000,
               "max_steps": 8000},
}


@dataclass
class FashionTstarParams(TstarParams):
    sweep: dict[str, Any] = param(
        FMNIST_SWEEP, PlainMapping('name: s, base: {}, grid: {lam: [0.001]}'),
        "the sweep: name, base config, grid and budget (the format of `l2dynamics sweep`)")
    fixed_budget: int = param(8000, Int(ge=0),
                              "a second arm in which every λ runs this many steps (0: none); "
                              "its t* cannot be shaped by a budget ∝ 1/λ", unit="steps")
    description: str = param("Fashion-MNIST, 2×128 ReLU MLP, plain SGD; t* = onset of the "
                             "accuracy plateau", TEXT, "what was run, in words, for the report "
                             "(the grid, seeds and budgets are appended from the design itself)")


class FashionTstarStudy(TstarStudy):
    key = "fmnist_tstar"
    title = "Fashion-MNIST (FC): how much L2 matters, and t* ∝ 1/λ"
    Params = FashionTstarParams


@dataclass
class FashionTuningParams(TuningParams):
    base: dict[str, Any] = param(FMNIST_FC, PlainMapping('lr: 0.1'),
                                 "the run config (flat keys) without λ, seed, steps")
    budget: int = param(3000, Int(ge=1), "steps of every full run, T", unit="steps")
    grid: tuple[float, ...] = param((1e-3, 4e-3, 1.6e-2, 6.4e-2), Floats(Real(gt=0)),
                                    "λ grid (λ = 0 is added)")
    seeds: tuple[int, ...] = param((0, 1, 2), Ints(Int(ge=0)), "seeds of every method")
    name: str = param("fmnist", TEXT, "the task's name (in logs and caches)")
    description: str = param(
        "Fashion-MNIST (4 000 train, 5 000 test), 2×128 MLP, SGD η = 0.2, batch 128, T = 3 000",
        TEXT, "what was run, for the report")


class FashionTuningStudy(TuningStudy):
    key = "fmnist_tuning"
    title = "Fashion-MNIST (FC): choosing λ for a budget"
    Params = FashionTuningParams
