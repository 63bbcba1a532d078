"""Trainer's update rule applied to K members stacked along a leading axis (the ensemble's
optimizer): coupled L2, decoupled decay, then torch's SGD / momentum / Nesterov (dampening 0,
first buffer = g) or Adam / AdamW (weight_decay 0, bias corrections from the shared step
count), with each member's own η_t, λ and λ_d.

The per-step, per-member scalars are computed once on the host in float64 exactly as Trainer
computes them (Python float arithmetic, :mod:`l2dynamics.train.clock`) and uploaded once, so
that an update needs no host-to-device copy: η (S, K), the decoupled factor 1 − η·λd, Adam's
−η/(1 − β1^t). Physical time and λ-time are kept per member, as Trainer keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from l2dynamics.config import Config
from l2dynamics.train.clock import advance, lr_factors, lr_table


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) member scalars shaped to broadcast against the stacked tensor `like`."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


class StackedUpdate:
    """The optimizer state and schedules of the members of one ensemble (members differ only in
    ``lam``, ``lr``, ``decoupled_wd`` and ``steps``; the first config gives the rest)."""

    def __init__(self, configs: Sequence[Config], device: torch.device, dtype: torch.dtype):
        cfg = self.cfg = configs[0]
        total = max(c.steps for c in configs)
        lr = np.zeros((total, len(configs)))
        factors: dict[int, np.ndarray] = {}
        for j, c in enumerate(configs):
            if c.steps not in factors:  # lr_factor depends on the member only through steps
                factors[c.steps] = lr_factors(c)
            lr[:c.steps, j] = lr_table(c, factors=factors[c.steps])
        self.lr_host = lr
        self.lam_host = np.array([c.lam for c in configs])
        self.phys_time = np.zeros(len(configs))
        self.lam_time = np.zeros(len(configs))
        self.state: dict[str, Any] = {}  # momentum buffer, or Adam's (exp_avg, exp_avg_sq)

        def dev(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a).to(device=device, dtype=dtype)

        self.lam = dev(self.lam_host) if any(c.lam for c in configs) else None
        wd = np.array([c.decoupled_wd for c in configs])
        self.decoupled = dev(1.0 - lr * wd) if wd.any() else None
        if cfg.optimizer == "sgd":
            self.neg_lr = dev(-lr)
        else:
            beta1, beta2 = cfg.betas
            # torch: bias_correction = 1 - beta ** step with step the float count of updates
            bc1 = np.array([1 - beta1 ** float(t + 1) for t in range(total)])
            self.bc2_sqrt = [(1 - beta2 ** float(t + 1)) ** 0.5 for t in range(total)]
            self.neg_step = dev(-(lr / bc1[:, None]))

    def apply(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
              decayed: Sequence[str], step: int) -> None:
        """Update `step` (0-based) of the stacked `params` in place from the data-loss `grads`,
        in Trainer._update's order; then advance the members' times."""
        if self.lam is not None:  # g += λ_k·θ_k (a member with λ = 0 adds exactly 0)
            for n in decayed:
                grads[n].addcmul_(params[n], _per_member(self.lam, params[n]))
        if self.decoupled is not None:  # θ ← (1 − η·λd)·θ before the optimizer step
            factor = self.decoupled[step]
            for n in decayed:
                params[n].mul_(_per_member(factor, params[n]))
        if self.cfg.optimizer == "sgd":
            self._sgd(params, grads, step)
        else:
            self._adam(params, grads, step)
        self.phys_time, self.lam_time = advance(self.phys_time, self.lam_time,
                                                self.lr_host[step], self.lam_host)

    def _sgd(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
             step: int) -> None:
        cfg, neg_lr = self.cfg, self.neg_lr[step]
        for n, p in params.items():
            g = grads[n]
            if cfg.momentum:  # torch.optim.SGD: first buffer = g, then μ·buf + g
                buf = self.state.get(n)
                if buf is None:
                    buf = self.state[n] = g.clone()
                else:
                    buf.mul_(cfg.momentum).add_(g)
                g = g.add(buf, alpha=cfg.momentum) if cfg.nesterov else buf
            p.addcmul_(g, _per_member(neg_lr, p))

    def _adam(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
              step: int) -> None:
        """torch.optim.Adam / AdamW with weight_decay=0 (single-tensor formulas)."""
        cfg = self.cfg
        beta1, beta2 = cfg.betas
        bc2_sqrt, neg_step = self.bc2_sqrt[step], self.neg_step[step]
        for n, p in params.items():
            g = grads[n]
            if n not in self.state:
                self.state[n] = (torch.zeros_like(p), torch.zeros_like(p))
            exp_avg, exp_avg_sq = self.state[n]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(cfg.eps)
            p.addcmul_(exp_avg / denom, _per_member(neg_step, p))

    def keep(self, positions: list[int], index: torch.Tensor | None) -> None:
        """Keep the members at stack `positions` (`index`: the same on the device; None when
        no member is left)."""
        if index is None:
            self.state = {}
            return

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, index)

        self.state = {n: tuple(take(s) for s in v) if isinstance(v, tuple) else take(v)
                      for n, v in self.state.items()}
        cols = np.asarray(positions)
        self.lr_host = self.lr_host[:, cols]
        self.lam_host = self.lam_host[cols]
        self.phys_time, self.lam_time = self.phys_time[cols], self.lam_time[cols]
        if self.lam is not None:
            self.lam = take(self.lam)
        if self.decoupled is not None:
            self.decoupled = self.decoupled.index_select(1, index)
        if self.cfg.optimizer == "sgd":
            self.neg_lr = self.neg_lr.index_select(1, index)
        else:
            self.neg_step = self.neg_step.index_select(1, index)
