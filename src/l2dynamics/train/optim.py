"""Optimizers.

Optimizers are built with ``weight_decay=0``: L2 and decoupled decay belong to
:class:`l2dynamics.l2.L2Penalty`, so λ means the same thing for every optimizer. The learning
rate of each update is set by the loop from :func:`l2dynamics.train.clock.lr_at`.
"""

from __future__ import annotations

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
