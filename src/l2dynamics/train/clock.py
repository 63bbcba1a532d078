"""The clocks of a run: when metrics are taken, the learning rate at each update, and time.

- Evaluation clock (:func:`eval_steps`): log-spaced steps so that early and late peaks are both
  resolved; :func:`eval_plan` fits it, and the test examples each point uses, into the
  ``eval_budget`` share of the run's training compute before the run starts.
- Learning rate: η_t = lr · :func:`lr_factor` (t) for the update at step t (0-based), a pure
  function of t, so resuming a run needs no scheduler state (:func:`lr_at`, :func:`lr_table`).
- Time: after s updates, physical time is Σ_{t<s} η_t and λ-time Σ_{t<s} η_t·λ_t, both summed
  one update at a time by :func:`advance` (the Trainer, the ensemble and :func:`physical_time`
  add the same numbers in the same order, so they agree to the bit). The *effective* time
  Φ = Σ η_t/(1 − μ) adds heavy-ball momentum μ through its long-time step size η/(1 − μ)
  (:func:`effective_time`; it sets c·η = λ·Φ(t*) in :mod:`l2dynamics.studies.predict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from l2dynamics.config import Config

Number = TypeVar("Number", float, np.ndarray)


def eval_steps(total_steps: int, per_decade: int = 10, every: int = 0) -> np.ndarray:
    """Sorted unique steps in [0, total_steps] at which metrics are taken.

    Step s means "after s optimizer updates". The grid holds 0, 1, round(10^(k/per_decade)) for
    k = 0, 1, …, the final step, and every multiple of `every` when `every` > 0 (a linear tail).
    """
    if total_steps < 0:
        raise ValueError("total_steps must be >= 0")
    points = [0, total_steps]
    if total_steps >= 1:
        count = int(np.floor(per_decade * np.log10(total_steps))) + 1
        points += np.round(10.0 ** (np.arange(count) / per_decade)).astype(int).tolist()
    if every > 0:
        points += list(range(0, total_steps + 1, every))
    return np.unique(np.clip(points, 0, total_steps))


TRAIN_COST_PER_EXAMPLE = 3
"""Forward-pass equivalents of one training example: its forward and its backward (about two
forwards: gradients with respect to activations and to weights). An evaluated example costs 1."""

EVAL_SUBSET_FLOOR = 2000
"""Fewest test examples an intermediate evaluation point uses under a budget (the whole test set
if smaller): the binomial standard error of an accuracy near 0.8 on 2,000 examples is 0.9
points. Below this the budget thins the clock instead."""


THIN_MIN_STEPS = 1000
"""Runs shorter than this keep their whole clock under a budget (only their test subset
shrinks, down to the floor): short runs are probes and tests whose clock is their purpose (a
t* probe stops when its accuracy plateaus), and their whole evaluation is cheap in absolute
terms. The budget is guaranteed for runs of at least this many updates (issue 21's scope)."""


@dataclass(frozen=True)
class EvalPlan:
    """When a run evaluates and on how many examples, decided before its first update.

    Costs are in forward-pass example equivalents (an evaluated example costs 1, a trained one
    :data:`TRAIN_COST_PER_EXAMPLE`). Every point but the last takes the test metrics on the first
    ``test_n`` examples of a fixed test-set order (a function of ``data_seed`` only, so every run
    of a study sees the same subset); the last point (step = ``steps``) uses all ``full_n``.
    The training metrics use the same ``train_n`` examples at every point, the validation
    metrics the whole validation set (``val_n`` examples, 0 without one).
    """

    clock: np.ndarray  # the steps evaluated (after that many updates)
    per_decade: int  # the log clock's density, ≤ cfg.eval_per_decade
    test_n: int  # test examples at every point but the last
    full_n: int  # test examples at the last point: the whole test set
    train_n: int  # examples of the fixed training subset, at every point
    steps: int
    eval_cost: float  # Σ over points of (test examples + train_n + val_n)
    train_cost: float  # TRAIN_COST_PER_EXAMPLE × batch size × steps
    budget: float  # the eval_budget asked for (0: no budget)
    val_n: int = 0  # validation examples, at every point

    @property
    def fraction(self) -> float:
        """Evaluation compute / training compute."""
        return self.eval_cost / self.train_cost if self.train_cost else math.inf

    @property
    def within_budget(self) -> bool:
        return self.budget == 0 or self.fraction <= self.budget

    def test_size(self, step: int) -> int:
        """Test examples used at `step`: all of them at the last step, else ``test_n``."""
        return self.full_n if step >= self.steps else self.test_n


def _plan(clock: np.ndarray, per_decade: int, test_n: int, full_n: int, train_n: int,
          steps: int, train_cost: float, budget: float, val_n: int = 0) -> EvalPlan:
    cost = float((len(clock) - 1) * (test_n + train_n + val_n) + full_n + train_n + val_n)
    return EvalPlan(clock, per_decade, test_n, full_n, train_n, steps, cost, train_cost, budget,
                    val_n)


def eval_plan(cfg: Config, n_test: int, n_train_eval: int, batch_size: int,
              n_val: int = 0) -> EvalPlan:
    """The evaluation plan of a run of `cfg`: at most ``cfg.eval_budget`` × its training compute.

    `n_test`: test examples; `n_train_eval`: examples of the training subset evaluated at each
    point; `batch_size`: examples per update (capped at the training set); `n_val`: validation
    examples, all evaluated at every point (their cost is fixed, like the training subset's,
    so a validation set leaves less of the budget to the test subset). Training costs
    ``3 × batch_size × steps`` forward equivalents. With ``eval_budget`` = 0, or when the full
    clock on the full test set fits, the plan is ``eval_steps(steps, eval_per_decade,
    eval_every)`` on all `n_test` examples everywhere. Otherwise the intermediate points use the
    largest test subset that fits, down to ``min(EVAL_SUBSET_FLOOR, n_test)``; if even that does
    not fit, the log clock is thinned (fewer points per decade, the largest density that fits at
    the floor) — for runs of at least :data:`THIN_MIN_STEPS` updates; shorter ones keep their
    clock at the floor. The ``eval_every`` tail the user asked for is kept. A plan still over
    budget at one point per decade (the final full evaluation alone may exceed it) is that
    sparsest clock at the floor; ``within_budget`` says so.
    """
    steps, every = cfg.steps, cfg.eval_every
    train_cost = float(TRAIN_COST_PER_EXAMPLE * batch_size * steps)
    budget = cfg.eval_budget * train_cost

    def plan(per_decade: int, test_n: int) -> EvalPlan:
        return _plan(eval_steps(steps, per_decade, every), per_decade, test_n, n_test,
                     n_train_eval, steps, train_cost, cfg.eval_budget, n_val)

    full = plan(cfg.eval_per_decade, n_test)
    if cfg.eval_budget == 0 or full.eval_cost <= budget:
        return full
    floor = min(EVAL_SUBSET_FLOOR, n_test)
    fixed = n_train_eval + n_val  # evaluated in full at every point
    spare = budget - (n_test + fixed)  # what the intermediate points may spend
    sparsest = 1 if steps >= THIN_MIN_STEPS else cfg.eval_per_decade
    for per_decade in range(cfg.eval_per_decade, sparsest - 1, -1):
        inner = len(eval_steps(steps, per_decade, every)) - 1
        test_n = math.floor(spare / inner) - fixed if inner else n_test
        if test_n >= floor:
            return plan(per_decade, min(test_n, n_test))
    return plan(sparsest, floor)


def lr_factor(step: int, cfg: Config) -> float:
    """Multiplier of ``cfg.lr`` for the update at `step` (0-based).

    Linear warm-up over ``warmup_steps`` ((t+1)/W), then ``constant``; ``step``: × lr_gamma at
    each milestone (fractions of ``steps``, e.g. 0.3/0.6/0.9 as in google/autol2); ``cosine``:
    ½(1 + cos(π·u)) with u the fraction of the post-warm-up steps done.
    """
    warm = cfg.warmup_steps
    if step < warm:
        return (step + 1) / warm
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "step":
        passed = sum(step >= int(m * cfg.steps) for m in cfg.lr_milestones)
        return cfg.lr_gamma**passed
    if cfg.lr_schedule == "cosine":
        u = (step - warm) / max(1, cfg.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * u))
    raise AssertionError(f"unvalidated lr_schedule {cfg.lr_schedule!r}")


def lr_at(cfg: Config, step: int) -> float:
    """η_t = lr · lr_factor(t): the learning rate of the update at `step` (0-based)."""
    return cfg.lr * lr_factor(step, cfg)


def probe_lr(cfg: Config, step: int) -> float:
    """The ``lr`` stored with the metrics at `step`: η of the next update, or of the last
    update once `step` = ``cfg.steps``."""
    return lr_at(cfg, min(step, cfg.steps - 1))


def lr_factors(cfg: Config, steps: int | None = None) -> np.ndarray:
    """lr_factor(t) for t < `steps` (default ``cfg.steps``) as float64. It depends on `cfg`'s
    schedule keys and ``steps`` only, not on ``lr``."""
    steps = cfg.steps if steps is None else int(steps)
    if cfg.lr_schedule == "constant" and cfg.warmup_steps == 0:
        return np.ones(steps)
    return np.array([lr_factor(t, cfg) for t in range(steps)], dtype=float)


def lr_table(cfg: Config, steps: int | None = None,
             factors: np.ndarray | None = None) -> np.ndarray:
    """η_t for t < `steps` (default ``cfg.steps``) as float64; entry t equals ``lr_at(cfg, t)``
    exactly. `factors` reuses ``lr_factors(cfg, steps)`` computed for a config that differs
    only in ``lr``."""
    return cfg.lr * (lr_factors(cfg, steps) if factors is None else factors)


def advance(phys_time: Number, lam_time: Number, lr: Number,
            lam: Number) -> tuple[Number, Number]:
    """(physical time, λ-time) after one more update at rate `lr` with coupled L2 `lam`:
    (phys + η, λ-time + η·λ). Floats for a run, arrays (one entry per member) for an
    ensemble."""
    return phys_time + lr, lam_time + lr * lam


def physical_time(cfg: Config, steps: int) -> float:
    """Σ_{t<steps} η_t, summed in update order (a run's ``phys_time`` after `steps` updates)."""
    if int(steps) <= 0:
        return 0.0
    return float(np.add.accumulate(lr_table(cfg, steps))[-1])


def momentum_divisor(cfg: Config) -> float:
    """1 − μ for (heavy-ball or Nesterov) SGD with momentum μ, 1 for Adam/AdamW: under a
    constant gradient the step size tends to η/(1 − μ)."""
    return 1.0 - cfg.momentum if cfg.optimizer == "sgd" else 1.0


def effective_time(cfg: Config, steps: int) -> float:
    """Φ = Σ_{t<steps} η_t / (1 − μ): physical time with the schedule and momentum (μ for SGD
    only, see :func:`momentum_divisor`)."""
    return physical_time(cfg, steps) / momentum_divisor(cfg)


__all__ = ["EVAL_SUBSET_FLOOR", "THIN_MIN_STEPS", "TRAIN_COST_PER_EXAMPLE", "EvalPlan", "advance",
           "effective_time", "eval_plan", "eval_steps", "lr_at", "lr_factor", "lr_factors",
           "lr_table", "momentum_divisor", "physical_time", "probe_lr"]
