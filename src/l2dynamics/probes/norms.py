"""Per-tensor probes of the normalization picture (van Laarhoven 2017), in float64.

At a probe step, from the *data-loss* gradient of that step's batch (before the L2 term):

- ``gradnorm/<t>`` = ‖∇L‖;  ``unit_gradnorm/<t>`` = ‖ḡ‖ = ‖w‖·‖∇L‖ (the gradient at unit norm
  for a scale-invariant tensor);  ``cos_wg/<t>`` = |cos(w, ∇L)| (0 for scale-invariant ones).

At every probe-clock point, over the updates since the previous one (the window):

- ``angle_mean/<t>`` and ``angle_rms/<t>``: the angular update θ = arccos(⟨w, w'⟩/(‖w‖‖w'‖))
  per optimizer step, in radians (the equilibrium formulas predict the RMS);
- ``eff_lr/<t>``: the effective learning rate of the tensor now — η/((1 − μ)·‖w‖²) for SGD
  with heavy-ball momentum μ, η/‖w‖ for Adam and AdamW;
- ``grad_ms/<t>``: the mean over the window's updates of ‖∇L‖² (data loss, each update's
  batch) and ``norm_ms/<t>`` the mean of ‖w‖² before each update — the two sides of the
  stationary identity E‖w‖² = η·E‖∇L‖²/(λ(2 − ηλ)) (plain SGD, scale-invariant w).

θ is computed per whole tensor. The angle uses atan2(‖w × w'‖, ⟨w, w'⟩) in float64, accurate
for the tiny angles (~1e-3 rad) of late training where arccos of a rounded cosine is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def effective_lr(lr: float, norm: float, optimizer: str, momentum: float = 0.0) -> float:
    """η/((1 − μ)‖w‖²) for SGD, η/‖w‖ for Adam(W) (per-step learning rate `lr`)."""
    if norm <= 0:
        return math.inf
    if optimizer == "sgd":
        return lr / ((1.0 - momentum) * norm ** 2)
    return lr / norm


def angle_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two tensors (flattened) in radians, float64, stable for tiny angles."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    dot = float(a @ b)
    # ‖a‖²‖b‖² − ⟨a,b⟩² = ‖a‖²‖b − proj_a b‖²: use the residual, not the difference of squares
    na = float(a.norm())
    if na == 0 or float(b.norm()) == 0:
        return 0.0
    residual = b - (dot / na ** 2) * a
    return math.atan2(na * float(residual.norm()), dot)


class NormProbe:
    """Angular updates every step and gradient statistics at probe steps, for `named` tensors."""

    def __init__(self, named: Sequence[tuple[str, torch.nn.Parameter]], optimizer: str,
                 momentum: float = 0.0):
        self.named = [(n, p) for n, p in named if p.ndim >= 1]
        self.optimizer, self.momentum = optimizer, momentum
        self._before: list[torch.Tensor] = []
        self._sum = {n: 0.0 for n, _ in self.named}
        self._sumsq = {n: 0.0 for n, _ in self.named}
        self._grad_sq = {n: 0.0 for n, _ in self.named}
        self._norm_sq = {n: 0.0 for n, _ in self.named}
        self._count = 0

    def before_step(self) -> None:
        """Call after the data-loss backward, before the L2 term and the optimizer step."""
        self._before = [p.detach().double().clone() for _, p in self.named]
        for (name, p), w in zip(self.named, self._before, strict=True):
            if p.grad is not None:
                self._grad_sq[name] += float(p.grad.detach().double().norm()) ** 2
            self._norm_sq[name] += float(w.norm()) ** 2

    def after_step(self) -> None:
        for (name, p), before in zip(self.named, self._before, strict=True):
            theta = angle_between(before, p.detach())
            self._sum[name] += theta
            self._sumsq[name] += theta * theta
        self._count += 1
        self._before = []

    def gradient_metrics(self) -> dict[str, float]:
        """From the parameters' ``.grad`` (call after the data-loss backward, before L2)."""
        out = {}
        for name, p in self.named:
            if p.grad is None:
                continue
            g, w = p.grad.detach().double().reshape(-1), p.detach().double().reshape(-1)
            gn, wn = float(g.norm()), float(w.norm())
            out[f"gradnorm/{name}"] = gn
            out[f"unit_gradnorm/{name}"] = gn * wn
            out[f"cos_wg/{name}"] = abs(float(g @ w)) / (gn * wn) if gn > 0 and wn > 0 else 0.0
        return out

    def window_metrics(self, lr: float) -> dict[str, float]:
        """Angular update mean/RMS over the window since the last call, and the effective LR
        now; resets the window."""
        out = {}
        for name, p in self.named:
            norm = float(p.detach().double().norm())
            out[f"eff_lr/{name}"] = effective_lr(lr, norm, self.optimizer, self.momentum)
            if self._count:
                out[f"angle_mean/{name}"] = self._sum[name] / self._count
                out[f"angle_rms/{name}"] = math.sqrt(self._sumsq[name] / self._count)
                out[f"grad_ms/{name}"] = self._grad_sq[name] / self._count
                out[f"norm_ms/{name}"] = self._norm_sq[name] / self._count
            self._sum[name] = self._sumsq[name] = 0.0
            self._grad_sq[name] = self._norm_sq[name] = 0.0
        self._count = 0
        return out
