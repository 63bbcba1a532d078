"""Probes taken on the evaluation clock: losses, accuracies and weight norms."""

from __future__ import annotations

import math

import torch

from l2dynamics.losses import LossFn, correct_count


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
             *, classification: bool, batch_size: int,
             channels_last: bool = False) -> tuple[float, float]:
    """(mean data loss, accuracy) of `model` on (x, y) in eval mode, `batch_size` examples at a
    time (each batch in NHWC layout when `channels_last`); accuracy is NaN for regression. The
    loss excludes the L2 term."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    n = x.shape[0]
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        if channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out = model(xb)
        yb = y[start:start + batch_size]
        total_loss += loss_fn(out, yb).double() * yb.shape[0]
        if classification:
            correct += correct_count(out, yb)
    model.train(was_training)
    accuracy = correct.item() / n if classification else math.nan
    return total_loss.item() / n, accuracy


@torch.no_grad()
def weight_norms(named_params: list[tuple[str, torch.Tensor]]) -> tuple[float, dict[str, float]]:
    """(‖θ‖ over all tensors, {name: ‖θ_name‖}) in float64 accumulation."""
    if not named_params:
        return 0.0, {}
    norms = torch._foreach_norm([p.detach() for _, p in named_params])
    values = torch.stack([n.double() for n in norms]).cpu().tolist()
    total = math.sqrt(sum(v * v for v in values))
    return total, {name: v for (name, _), v in zip(named_params, values, strict=True)}
