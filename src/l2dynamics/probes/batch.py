"""The batch a probe runs on: checked once, moved to the model's device and dtype."""

from __future__ import annotations

import torch
from torch import nn

from l2dynamics.errors import ConfigError


def probe_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor, *,
                training: bool, dropout_hint: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a probe's batch and move it to `ref`'s device and (floating) dtype: refuses active
    dropout when the probe runs the model in training mode (the loss would be random) and
    mismatched or empty x/y, each with a one-line message."""
    if training and any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
                        for m in model.modules()):
        raise ConfigError(f"model has active dropout in train mode: the loss is random; "
                          f"{dropout_hint}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"x and y must hold the same number ≥ 1 of samples "
                          f"(got {x.shape[0]} and {y.shape[0]})")
    x = x.to(device=ref.device, dtype=ref.dtype if x.is_floating_point() else x.dtype)
    y = y.to(device=ref.device, dtype=ref.dtype if y.is_floating_point() else y.dtype)
    return x, y
