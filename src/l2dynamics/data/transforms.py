"""Tensor transforms on whole datasets and batches: normalization, class-balanced subsets, and
CIFAR-style augmentation.

All of them are plain tensor ops that run on the data's device. Randomness comes only from an
explicit ``torch.Generator``, so a seeded generator reproduces the same subset or batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from l2dynamics.errors import ConfigError

NORMALIZE_MODES = ("channel", "global", "none")


def normalize(
    x_train: torch.Tensor, x_test: torch.Tensor, mode: str = "channel"
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Standardize inputs with statistics of the training set only (no test leakage).

    ``"channel"``: one mean/std per channel (dim 1) for image batches ``(n, C, H, W)``; flat
    vectors ``(n, d)`` get one global scalar (per-feature scaling would change the geometry the
    teacher and mnist1d data were built with). ``"global"``: one scalar for everything.
    ``"none"``: unchanged. The std is the population std (``correction=0``), so the normalized
    training set has mean 0 and std 1 exactly up to rounding; constant channels keep std 1.

    Returns the two normalized tensors and ``{"mode", "mean", "std"}`` (lists of floats, one per
    channel or a single entry) for ``Dataset.info``.
    """
    if mode not in NORMALIZE_MODES:
        raise ConfigError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {mode!r}")
    if mode == "none":
        return x_train, x_test, {"mode": "none"}
    per_channel = mode == "channel" and x_train.ndim >= 3
    dims = [0, *range(2, x_train.ndim)] if per_channel else list(range(x_train.ndim))
    var, mean = torch.var_mean(x_train, dim=dims, keepdim=True, correction=0)  # one pass
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    stats = {"mode": mode, "mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return (x_train - mean).div_(std), (x_test - mean).div_(std), stats


def balanced_subset(
    y: torch.Tensor, n: int, num_classes: int, generator: torch.Generator, *, what: str = "subset"
) -> torch.Tensor:
    """Indices of a class-balanced random subset of size ``n`` of the labels ``y``.

    Each class gets ``n // num_classes`` examples; the remainder ``n % num_classes`` is spread
    one each over the first classes. Examples are drawn without replacement with ``generator``
    (CPU) and the result is shuffled, so classes are interleaved in the returned order.
    """
    y = y.cpu()
    counts = torch.bincount(y, minlength=num_classes)
    limit = max_balanced_size(counts)
    if n > limit:
        raise ConfigError(
            f"{what}: asked for {n} examples but a class-balanced subset can have at most "
            f"{limit} (smallest class has {int(counts.min())})"
        )
    want = torch.full((num_classes,), n // num_classes, dtype=torch.long)
    want[: n % num_classes] += 1
    picks = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[: want[c]]])
    idx = torch.cat(picks)
    return idx[torch.randperm(len(idx), generator=generator)]


def max_balanced_size(counts: torch.Tensor) -> int:
    """Largest ``n`` that :func:`balanced_subset` can draw from per-class ``counts``."""
    m, r = int(counts.min()), 0
    while r < len(counts) - 1 and counts[r] > m:  # remainder goes to the leading classes
        r += 1
    return m * len(counts) + r


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip with probability 1/2.

    ``x`` is an image batch ``(n, C, H, W)``; the output has the same shape, device and dtype.
    Each image is zero-padded by ``pad`` pixels on every side and an ``H x W`` window is cut at a
    uniformly random offset in ``[0, 2 * pad]^2`` (the standard CIFAR augmentation), then flipped
    left-right with probability 1/2. One gather for the whole batch, no Python loop over images.
    The random numbers are drawn on ``generator.device`` and moved to ``x.device``.
    """
    n, _, h, w = x.shape
    g_dev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=g_dev).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=g_dev).to(x.device)
    flip = (torch.rand(n, 1, generator=generator, device=g_dev) < 0.5).to(x.device)
    rows = dy + torch.arange(h, device=x.device)  # (n, H) rows of the padded image
    cols = dx + torch.arange(w, device=x.device)  # (n, W)
    cols = torch.where(flip, cols.flip(1), cols)  # a flip reads the window right to left
    padded = F.pad(x, (pad, pad, pad, pad))
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
