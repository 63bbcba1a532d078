"""Data losses (without the L2 term) and accuracy.

- ``ce``: mean cross-entropy over the batch.
- ``mse``: ½·Σ_outputs (f − y)², averaged over the batch, with y the one-hot target for
  classification or the target value for regression. The theory's loss ½Σ_a‖f(x_a) − y_a‖²
  sums over the n training points: full-batch mean loss + (λ/2)‖θ‖² at rate η is the summed
  loss + (nλ/2)‖θ‖² at rate η/n, i.e. t_theory = η·steps/n and λ_theory = n·λ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(name: str, task: str, num_outputs: int) -> LossFn:
    """The batch-mean data loss for `name` ("ce" | "mse") on a `task`."""
    if name == "ce":
        if task != "classification":
            from l2dynamics.errors import ConfigError

            raise ConfigError("loss='ce' needs a classification dataset; use loss='mse'")
        return F.cross_entropy
    if name == "mse":
        if task == "classification":

            def mse_onehot(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                target = F.one_hot(y, num_outputs).to(out.dtype)
                return 0.5 * (out - target).pow(2).sum(dim=1).mean()

            return mse_onehot

        def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return 0.5 * (out - y).pow(2).sum(dim=1).mean()

        return mse
    raise AssertionError(f"unvalidated loss {name!r}")


def correct_count(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of argmax-correct predictions (classification)."""
    return (out.argmax(dim=1) == y).sum()
