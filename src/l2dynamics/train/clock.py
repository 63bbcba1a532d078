"""The clocks of a run: when metrics are taken, the learning rate at each update, and time.

- Evaluation clock (:func:`eval_steps`): log-spaced steps so that early and late peaks are both
  resolved.
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


__all__ = ["advance", "effective_time", "eval_steps", "lr_at", "lr_factor", "lr_factors",
           "lr_table", "momentum_divisor", "physical_time", "probe_lr"]
