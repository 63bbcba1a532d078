"""The L2 term itself, applied to gradients and parameters around the optimizer step.

Optimizers are always built with ``weight_decay=0``; this object owns both decay knobs so that
the convention is the same for every optimizer and λ can change at any step (AutoL2 sets
``penalty.lam``):

- coupled ``lam`` (the paper's λ): after ``backward()``, grad ← grad + λ·θ — the gradient of
  (λ/2)·‖θ‖². For SGD, momentum SGD and Adam this reproduces PyTorch's ``weight_decay=λ`` exactly.
- ``decoupled_wd`` (λ_d): before the optimizer step, θ ← (1 − η·λ_d)·θ, which is what
  ``torch.optim.AdamW`` does with ``weight_decay=λ_d`` — including AdamW's rule that a
  parameter whose ``.grad`` is None (unused in this step's graph, or frozen) is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class L2Penalty:
    """Coupled L2 (λ/2)‖θ‖² and decoupled decay on a fixed list of parameters."""

    def __init__(self, params: Sequence[torch.nn.Parameter], lam: float = 0.0,
                 decoupled_wd: float = 0.0):
        self.params = list(params)
        self.lam = float(lam)
        self.decoupled_wd = float(decoupled_wd)

    def add_to_grad(self) -> None:
        """grad += λ·θ for every decayed parameter that has a gradient."""
        if self.lam == 0.0:
            return
        pairs = [(p.grad, p) for p in self.params if p.grad is not None]
        if pairs:
            grads, params = zip(*pairs, strict=True)
            torch._foreach_add_(list(grads), list(params), alpha=self.lam)

    @torch.no_grad()
    def decay(self, lr: float) -> None:
        """θ ← (1 − η·λ_d)·θ for every decayed parameter that has a gradient (call after
        ``backward()`` and before ``optimizer.step()``; AdamW skips — neither steps nor
        decays — a parameter whose ``.grad`` is None, and so does this)."""
        if self.decoupled_wd == 0.0:
            return
        params = [p for p in self.params if p.grad is not None]
        if params:
            torch._foreach_mul_(params, 1.0 - lr * self.decoupled_wd)

    @torch.no_grad()
    def value(self) -> float:
        """The penalty (λ/2)·Σ‖θ‖² at the current parameters (not added to reported losses)."""
        if not self.params:
            return 0.0
        norms = torch._foreach_norm(self.params)
        return 0.5 * self.lam * float(sum(n.double() ** 2 for n in norms))

    def state_dict(self) -> dict:
        return {"lam": self.lam, "decoupled_wd": self.decoupled_wd}

    def load_state_dict(self, state: dict) -> None:
        self.lam = float(state["lam"])
        self.decoupled_wd = float(state["decoupled_wd"])
