"""Optimizers and learning-rate schedules.

Optimizers are built with ``weight_decay=0``: L2 and decoupled decay belong to
:class:`l2dynamics.l2.L2Penalty`, so λ means the same thing for every optimizer. Schedules are
pure functions of the step (η_t = lr · factor(t)), so resuming a run needs no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from l2dynamics.config import Config


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Config) -> torch.optim.Optimizer:
    """SGD (optionally heavy-ball or Nesterov momentum, PyTorch convention), Adam or AdamW."""
    params = list(params)
    # on CUDA the fused kernels apply the same update rule to every tensor in one launch
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=0.0, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                weight_decay=0.0, **fused)
    if cfg.optimizer == "adamw":
        # AdamW's own decay is off; `decoupled_wd` applies the identical θ ← (1 − η·λ_d)·θ.
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=0.0, **fused)
    raise AssertionError(f"unvalidated optimizer {cfg.optimizer!r}")


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
